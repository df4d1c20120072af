"""``active``: the paper's loss minimised on the few mask elements that can move, with exact line searches.

Why: M starts at 1 and is clipped there, and the L1 term holds an element at 1 unless blurring
it lowers the model's part of the loss by more than its L1 cost (lambda2 / n per unit). So the
gradient that matters is sparse, and a random-direction estimate (NES, SPSA) spends nearly all
of its queries on elements that will never move, its noise moving them anyway. The model is
deterministic, so the loss at a given mask is known exactly from one query: a step can be
*checked* before it is taken. The optimiser:

1. **screen**: M = 1 with one element lowered by ``screen_step``, one query per element (the
   model's loss at M = 1 is the image's own, already scored): the one-sided gain of blurring
   each element, occlusion at the mask's resolution;
2. **active set**: the elements whose gain exceeds ``threshold`` x their L1 cost, most gain
   first, at most ``max_active``, and their 4-neighbours while room is left (the TV term moves
   regions, not single elements);
3. **descent on the active set**: central differences on each active element (2 |A| queries)
   plus the exact gradient of R_M, projected on [0, 1]; ``trials`` step lengths along it scored
   in one batch, J(M) = model part (queried) + R_M (exact), the best kept only if it lowers J.
   The lengths follow the last accepted one (doubled when the longest won) and shrink by 4
   when none lowers J. With ``reuse``, a step that lowered nothing left the mask, and so the
   slopes, as they were: the next one scores only the lengths below those tried, no new probes;
4. when the step length falls below ``min_step`` the active set has converged: the screen is
   repeated at the current mask, and the run ends (converged) if no new element would pay,
   else continues on the enlarged set. It also ends when the budget is spent. With ``local``,
   that screen looks first only at the elements near those moved (and at earlier candidates
   that found no room), and screens every element only when those hold nothing new. With
   ``stall``, a descent whose last 3 steps gained little against its round's drop screens early
   (a re-screen is where new elements, and the large drops, come from); only a step length
   shrunk to ``min_step`` certifies convergence.

J never rises (only improving steps are taken), so the result is never worse than M = 1. No
random draws: the result is a function of the image, the model and the settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Generator

import numpy as np

LossFn = Callable[[np.ndarray], np.ndarray]  # (B, h, w) masks -> (B,) model losses, one query each
RegFn = Callable[[np.ndarray], "tuple[float, np.ndarray]"]  # mask -> (R_M, exact gradient)
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class ActiveSet:
    screen_step: float = 0.5  # how far one element is lowered from 1 to screen it
    step: float = 0.05  # central-difference step on active elements
    threshold: float = 0.5  # an element is a candidate when its screened gain > threshold x its L1 cost
    max_active: int = 48
    trials: int = 4  # step lengths scored per step, in one batch
    first_length: float = 0.25  # the longest element move of the first step
    min_step: float = 1e-3
    recheck: int = 1  # elements pinned at a bound are probed every recheck-th step only (1: every step)
    combine: bool = False  # also try all the screened moves that lowered J on their own, together
    neighbours: bool = False  # add the 4-neighbours of each candidate while room is left
    central: bool = False  # central differences (2 queries per element), else one-sided (1)
    reuse: bool = True  # a step that lowered nothing keeps its slopes (same mask) and tries shorter lengths only
    local: int = 1  # > 0: a re-screen looks first only near moved elements (this many away) and at earlier candidates
    memory: int = 0  # > 0: L-BFGS directions from this many past steps (elements inside (0, 1)), else steepest
    stall: float = 0.1  # > 0: screen early once 3 steps lowered J by < stall x the drop since the last screen
    block_screen: int = 0  # > 1: when a screen of every element finds nothing, screen blocks of this side too
    room_steps: int = 0  # > 0: the set may grow past max_active to what lets this many steps fit in the budget left


@dataclass
class ActiveResult:
    mask: np.ndarray
    history: list[float]  # exact J after each step (J(1) first)
    queries: int
    converged: bool  # the step length shrank to min_step and a screen of every element found none that pays
    screens: int = 0
    active: list[int] = field(default_factory=list)  # flat indices of the final active set


def optimise(loss: LossFn, regularizer: RegFn, shape: tuple[int, int], budget: int, loss_at_ones: float,
             lambda2: float, settings: ActiveSet = ActiveSet(), progress: Progress | None = None) -> ActiveResult:
    """Minimise J(M) = loss(M) + R_M(M) over M in [0, 1]^shape from M = 1 with at most ``budget`` queries.

    ``loss_at_ones``: the model's loss at M = 1 (the image itself, scored by the caller);
    ``lambda2``: the L1 weight of R_M, which sets what a screened gain must exceed.
    :func:`optimise_steps` driven by ``loss``.
    """
    steps = optimise_steps(regularizer, shape, budget, loss_at_ones, lambda2, settings, progress)
    try:
        masks = next(steps)
        while True:
            masks = steps.send(loss(masks))
    except StopIteration as end:
        return end.value


def optimise_steps(regularizer: RegFn, shape: tuple[int, int], budget: int, loss_at_ones: float, lambda2: float,
                   settings: ActiveSet = ActiveSet(),
                   progress: Progress | None = None) -> Generator[np.ndarray, np.ndarray, ActiveResult]:
    """:func:`optimise` as a generator, for a caller that scores the probes itself (:mod:`bbx.evaluation.lockstep`
    scores many explanations' together): it yields each batch of probe masks ``(B, h, w)`` and is
    sent their model losses ``(B,)``, one query each; it returns the :class:`ActiveResult`."""
    s = settings
    n = shape[0] * shape[1]
    mask = np.ones(shape, dtype=np.float64)
    j = loss_at_ones + regularizer(mask)[0]
    history = [j]
    used, screens = 0, 0
    active = np.zeros(n, dtype=bool)
    length = s.first_length
    converged = False

    def grow(near: np.ndarray | None = None, side: int = 1) -> Generator[np.ndarray, np.ndarray, int | None]:
        """Screen the elements outside the active set (lowered by ``screen_step``, in blocks small
        enough for the budget left), take the best screened mask if it lowers J, and add to the
        set the elements whose screen lowered J, then those whose gain beat ``threshold`` x their
        L1 cost, and their neighbours, while room is left. How many were added or moved (None:
        no room to screen). ``near``: screen only these (flat bool), a local screen."""
        nonlocal used, screens, mask, j, model_loss, fine, screened_at, local_at
        active[mask.reshape(n) >= 1.0] = False  # those left at 1 are screened again with the rest
        groups = blocks(shape, ~active if near is None else ~active & near, budget - used - 2 * s.trials, side)
        if groups is None:
            return None
        probes = np.repeat(mask.reshape(1, n), len(groups), axis=0)
        drop = np.empty(len(groups))
        for row, members in enumerate(groups):
            lowered = np.clip(probes[row, members] - s.screen_step, 0.0, 1.0)
            drop[row] = float(np.mean(probes[row, members] - lowered))
            probes[row, members] = lowered
        values = yield probes.reshape(len(groups), *shape)
        used += len(groups)
        screens += 1
        if near is None and side == 1:
            screened_at = mask.copy()
            fine = all(len(g) == 1 for g in groups)  # element by element, not in blocks
        local_at = mask.copy()
        probe_j = values + np.array([regularizer(p.reshape(shape))[0] for p in probes])
        gains = (model_loss - values) / np.maximum(drop, 1e-12)
        for row, members in enumerate(groups):
            seen[members] = gains[row]
        room = s.max_active if not s.room_steps else max(s.max_active, (budget - used) // s.room_steps - s.trials)
        order = sorted(range(len(groups)), key=lambda i: (probe_j[i] >= j, -gains[i]))
        moved = 0
        best = int(np.argmin(probe_j))
        better = np.flatnonzero(probe_j < j)
        if len(better) > 1 and s.combine and used < budget - 2 * s.trials:
            # every screened move that lowered J on its own, together: one more query, taken if best
            both = mask.reshape(n).copy()
            for i in better:
                both[groups[i]] = probes[i, groups[i]]
            both_loss = float((yield both.reshape(1, *shape))[0])
            used += 1
            both_j = both_loss + regularizer(both.reshape(shape))[0]
            if both_j < probe_j[best]:
                mask, j, model_loss = both.reshape(shape), float(both_j), both_loss
                moved = 1
        if not moved and probe_j[best] < j:  # a screened mask is a mask J was measured at: take the best
            mask, j, model_loss = probes[best].reshape(shape).copy(), float(probe_j[best]), float(values[best])
            moved = 1
        active[mask.reshape(n) < 1.0] = True  # what a move took below 1 is descended on from now on
        picked: list[int] = []
        for i in order:
            if (probe_j[i] >= j and gains[i] <= s.threshold * lambda2 / n) or \
                    active.sum() + len(groups[i]) > room:
                break
            active[groups[i]] = True
            picked.extend(int(m) for m in groups[i])
        added = len(picked)
        for i in picked if s.neighbours else ():  # neighbours of the picked ones while room is left
            r, c = divmod(i, shape[1])
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < shape[0] and 0 <= cc < shape[1] and not active[rr * shape[1] + cc] \
                        and active.sum() < room:
                    active[rr * shape[1] + cc] = True
                    added += 1
        return added + moved

    model_loss = loss_at_ones
    g = np.zeros(n)  # the model part's slope per element, as last measured
    pinned = np.zeros(n, dtype=bool)
    steps = 0
    fine = False  # whether the last screen looked at each element alone
    screened_at = local_at = blocked_at = None
    seen = np.zeros(n)  # each element's gain at the last screen that looked at it
    pairs: list = []  # L-BFGS's (step, gradient change) pairs, oldest first
    last = None  # the mask, J's gradient and the elements inside (0, 1) at the last probe
    quiet = False  # a stall's screen found nothing: no more stall screens until a screen finds something
    since = 0  # where in the history this round of descent (since the last screen) began
    stale = False  # the last step lowered nothing: the mask, and so the slopes, are those last probed
    found = yield from grow()
    if not found:  # None: the budget cannot pay for one screen; 0: at M = 1 no element pays its L1 cost
        return ActiveResult(mask, history, used, converged=found == 0 and fine, screens=screens)
    while True:
        idx = np.flatnonzero(active)
        # elements held at a bound by their last slopes are probed again only every recheck-th step
        fresh = steps % s.recheck == 0
        probe = idx[:0] if stale else idx if fresh else idx[~pinned[idx]]
        need = (2 if s.central else 1) * len(probe) + s.trials
        if used + need > budget:
            if stale or fresh or used + (2 if s.central else 1) * len(idx[~pinned[idx]]) + s.trials > budget:
                break
            probe = idx[~pinned[idx]]
        steps += 0 if stale else 1
        if stale:
            values = np.empty(0)  # nothing probed: the slopes of the unchanged mask stand
        elif s.central:
            probes = np.repeat(mask.reshape(1, n), 2 * len(probe), axis=0)
            probes[np.arange(len(probe)), probe] += s.step
            probes[len(probe) + np.arange(len(probe)), probe] -= s.step
            values = yield probes.reshape(-1, *shape)
            g[probe] = (values[: len(probe)] - values[len(probe):]) / (2 * s.step)
        else:  # one probe per element, towards the inside of [0, 1]: half the queries, O(c) error
            probes = np.repeat(mask.reshape(1, n), len(probe), axis=0)
            sign = np.where(mask.reshape(n)[probe] >= 0.5, -1.0, 1.0)
            probes[np.arange(len(probe)), probe] += sign * s.step
            values = yield probes.reshape(-1, *shape)
            g[probe] = (values - model_loss) / (sign * s.step)
        used += len(values)
        flat = mask.reshape(n)
        r_down, r_up = one_sided(regularizer, mask, idx)
        # R_M has kinks (at 1 for L1, where neighbours are equal for TV): of J's two one-sided
        # slopes along an element, follow the one that lowers J, if any (the model part is smooth)
        slope_down = -g[idx] + r_down  # rate of change of J per unit of lowering the element
        slope_up = g[idx] + r_up
        move = np.where(slope_down < 0, slope_down, np.where(slope_up < 0, -slope_up, 0.0))
        move[(flat[idx] <= 0.0) & (move < 0)] = 0.0
        move[(flat[idx] >= 1.0) & (move > 0)] = 0.0
        grad = np.zeros(n)
        grad[idx] = -move
        pinned[idx] = (move == 0.0) & ((flat[idx] <= 0.0) | (flat[idx] >= 1.0))
        if s.memory and not stale:  # the pair (step, change of J's gradient) on the elements inside (0, 1)
            inside = np.zeros(n, dtype=bool)
            inside[idx] = (flat[idx] > 0.0) & (flat[idx] < 1.0)
            full = np.where(inside, g + regularizer(mask)[1].reshape(n), 0.0)
            if last is not None:
                both = inside & last[2]
                ds, dy = np.where(both, flat - last[0], 0.0), np.where(both, full - last[1], 0.0)
                if ds @ dy > 1e-12 * max(ds @ ds, 1e-300) ** 0.5 * max(dy @ dy, 1e-300) ** 0.5:
                    pairs = (pairs + [(ds, dy)])[-s.memory:]
            last = (flat.copy(), full, inside)
        if s.memory and pairs:
            grad = quasi_newton(grad, pairs, flat)
        top = np.abs(grad).max()
        if top > 0:
            direction = -grad / top
        if top > 0:
            lengths = length * 2.0 ** np.arange(-(s.trials - 2), 2)  # ... length/2, length, 2 length
            trial = np.clip(flat[None] + lengths[:, None] * direction[None], 0.0, 1.0)
            trial_loss = yield trial.reshape(-1, *shape)
            used += s.trials
            trial_j = np.array([trial_loss[t] + regularizer(trial[t].reshape(shape))[0] for t in range(s.trials)])
            best = int(np.argmin(trial_j))
        if top > 0 and trial_j[best] < j:
            mask = trial[best].reshape(shape)
            j, model_loss = float(trial_j[best]), float(trial_loss[best])
            length = lengths[best] * (2.0 if best == s.trials - 1 else 1.0)
            stale = False
        elif s.reuse and top > 0:  # the same direction again, at lengths below all those just tried
            length, stale = lengths[0] / 4.0, True
        else:
            length /= 4.0
        history.append(j)
        if progress is not None:
            progress(len(history) - 1, 0, j)
        stalled = s.stall and not quiet and len(history) - since > 3 and \
            history[-4] - j < s.stall * (history[since] - j)
        if stalled:  # the descent's returns have fallen under a screen's: look for new elements now
            kept, length = length, 0.0
        if length < s.min_step:
            stale, since = False, len(history) - 1
            found = (yield from grow(nearby(mask, seen, s.local, s.threshold * lambda2 / n))) \
                if s.local and not np.array_equal(mask, local_at) else 0
            # the model is deterministic: a screen at the mask last screened would find the same
            if not found:
                found = 0 if np.array_equal(mask, screened_at) else (yield from grow())
                if found == 0 and s.block_screen > 1 and fine and not np.array_equal(mask, blocked_at):
                    blocked_at = mask.copy()  # joint moves that no single element makes
                    found = (yield from grow(side=s.block_screen)) or 0
            if found == 0 and stalled:  # only a step shrunk to nothing certifies: descend on, no more stall screens
                length, quiet = kept, True
                continue
            if not found:  # the step shrank to nothing; no new element pays (or no room to look)
                converged = found == 0 and fine  # a screen in blocks, or none, certifies nothing
                break
            length, pairs, last, quiet = s.first_length, [], None, False
    return ActiveResult(mask, history, used, converged=converged, screens=screens,
                        active=[int(i) for i in np.flatnonzero(active)])


def quasi_newton(grad: np.ndarray, pairs: list, flat: np.ndarray) -> np.ndarray:
    """H ``grad`` by L-BFGS's two-loop recursion over ``pairs`` (elements outside the pairs' support
    scaled by s.y / y.y), kept only where ``grad`` moves an element the way it allows (in [0, 1])
    and only if it is still a descent direction; else ``grad`` itself."""
    q, alphas = grad.copy(), []
    for ds, dy in reversed(pairs):
        a = (ds @ q) / (dy @ ds)
        alphas.append(a)
        q -= a * dy
    ds, dy = pairs[-1]
    r = q * (ds @ dy) / (dy @ dy)
    for (ds, dy), a in zip(pairs, reversed(alphas)):
        r += ds * (a - (dy @ r) / (dy @ ds))
    r[(grad == 0.0) | ((flat <= 0.0) & (r > 0)) | ((flat >= 1.0) & (r < 0))] = 0.0
    return r if r @ grad > 0 else grad


def nearby(mask: np.ndarray, seen: np.ndarray, reach: int, floor: float) -> np.ndarray:
    """Flat bool: the elements within ``reach`` (in rows and columns) of one below 1, and those
    whose last screened gain beat ``floor`` (candidates that found no room)."""
    low = mask < 1.0
    out = low.copy()
    padded = np.pad(low, reach)
    for dr in range(2 * reach + 1):
        for dc in range(2 * reach + 1):
            out |= padded[dr:dr + low.shape[0], dc:dc + low.shape[1]]
    return out.reshape(-1) | (seen > floor)


def one_sided(regularizer: RegFn, mask: np.ndarray, idx: np.ndarray, delta: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """R_M's one-sided rates of change per unit of lowering, then of raising, each element of ``idx``."""
    base = regularizer(mask)[0]
    flat = mask.reshape(-1)
    down, up = np.empty(len(idx)), np.empty(len(idx))
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old - delta
        down[j] = (regularizer(mask)[0] - base) / delta
        flat[i] = old + delta
        up[j] = (regularizer(mask)[0] - base) / delta
        flat[i] = old
    return down, up


def blocks(shape: tuple[int, int], free: np.ndarray, room: int, least: int = 1) -> list[np.ndarray] | None:
    """The ``free`` elements (flat bool) in square blocks, the smallest block side whose count of
    non-empty blocks fits in ``room`` queries (from side ``least``); None when not even one block per quarter fits."""
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    for side in range(least, max(shape) + 1):
        key = (rows // side) * (shape[1] // side + 1) + cols // side
        ids = np.unique(key[free])
        if len(ids) <= room:
            if len(ids) == 0:
                return None
            return [np.flatnonzero(free & (key == b)) for b in ids]
        if side > max(shape) // 2:
            break
    return None
