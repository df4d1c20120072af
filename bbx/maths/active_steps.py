"""The steps of the active optimiser (:mod:`bbx.maths.active`) over one state, :class:`Descent`.

Each step is a generator that yields the probe masks it needs scored and is sent their model
losses; :func:`bbx.maths.active.optimise_steps` drives them in the order its docstring gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Generator

import numpy as np

if TYPE_CHECKING:
    from .active import ActiveSet

RegFn = Callable[[np.ndarray], "tuple[float, np.ndarray]"]  # mask -> (R_M, exact gradient)
Progress = Callable[[int, int, float], None]
Asks = Generator[np.ndarray, np.ndarray, Any]  # yields probe masks (B, h, w), is sent their losses (B,)


class Descent:
    """The optimiser's state: the mask and its exact J, the active set, the slopes last measured,
    the step length, the queries used and what the screens saw."""

    def __init__(self, settings: ActiveSet, regularizer: RegFn, shape: tuple[int, int], budget: int,
                 loss_at_ones: float, lambda2: float, result_type: type):
        self.s, self.regularizer, self.shape, self.budget, self.lambda2 = settings, regularizer, shape, budget, lambda2
        self._result_type = result_type
        self.n = n = shape[0] * shape[1]
        self.mask = np.ones(shape, dtype=np.float64)
        self.j = loss_at_ones + regularizer(self.mask)[0]
        self.history = [self.j]
        self.used = self.screens = 0
        self.active = np.zeros(n, dtype=bool)
        self.length = settings.first_length
        self.model_loss = loss_at_ones
        self.g = np.zeros(n)  # the model part's slope per element, as last measured
        self.pinned = np.zeros(n, dtype=bool)
        self.steps = 0
        self.fine = False  # whether the last screen looked at each element alone
        self.screened_at = self.local_at = self.blocked_at = None
        self.seen = np.zeros(n)  # each element's gain at the last screen that looked at it
        self.pairs: list = []  # L-BFGS's (step, gradient change) pairs, oldest first
        self.last: Any = None  # the mask, J's gradient and the elements inside (0, 1) at the last probe
        self.quiet = False  # a stall's screen found nothing: no more stall screens until a screen finds something
        self.since = 0  # where in the history this round of descent (since the last screen) began
        self.stale = False  # the last step lowered nothing: the mask, and so the slopes, are those last probed
        self.stalled = False  # this step's returns fell under a screen's (:meth:`check_stall`)
        self.kept = 0.0  # the step length a stall set aside

    def result(self, converged: bool) -> Any:
        return self._result_type(self.mask, self.history, self.used, converged=converged, screens=self.screens,
                                 active=[int(i) for i in np.flatnonzero(self.active)])

    # -- screen ----------------------------------------------------------------------------------
    def screen(self, near: np.ndarray | None = None, side: int = 1) -> Asks:
        """Screen the elements outside the active set (lowered by ``screen_step``, in blocks small
        enough for the budget left), take the best screened mask if it lowers J, and add to the
        set the elements whose screen lowered J, then those whose gain beat ``threshold`` x their
        L1 cost, and their neighbours, while room is left. How many were added or moved (None:
        no room to screen). ``near``: screen only these (flat bool), a local screen."""
        s, n = self.s, self.n
        self.active[self.mask.reshape(n) >= 1.0] = False  # those left at 1 are screened again with the rest
        free = ~self.active if near is None else ~self.active & near
        groups = blocks(self.shape, free, self.budget - self.used - 2 * s.trials, side)
        if groups is None:
            return None
        probes, drop = self._lowered(groups)
        values = yield probes.reshape(len(groups), *self.shape)
        self.used += len(groups)
        self.screens += 1
        if near is None and side == 1:
            self.screened_at = self.mask.copy()
            self.fine = all(len(g) == 1 for g in groups)  # element by element, not in blocks
        self.local_at = self.mask.copy()
        probe_j = values + np.array([self.regularizer(p.reshape(self.shape))[0] for p in probes])
        gains = (self.model_loss - values) / np.maximum(drop, 1e-12)
        for row, members in enumerate(groups):
            self.seen[members] = gains[row]
        room = s.max_active if not s.room_steps else max(s.max_active, (self.budget - self.used) // s.room_steps - s.trials)
        order = sorted(range(len(groups)), key=lambda i: (probe_j[i] >= self.j, -gains[i]))
        moved = yield from self._take_best(groups, probes, values, probe_j)
        self.active[self.mask.reshape(n) < 1.0] = True  # what a move took below 1 is descended on from now on
        return self._enlist(groups, order, probe_j, gains, room) + moved

    def _lowered(self, groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One probe per group, the group's elements lowered by ``screen_step``; each probe's mean drop."""
        probes = np.repeat(self.mask.reshape(1, self.n), len(groups), axis=0)
        drop = np.empty(len(groups))
        for row, members in enumerate(groups):
            lowered = np.clip(probes[row, members] - self.s.screen_step, 0.0, 1.0)
            drop[row] = float(np.mean(probes[row, members] - lowered))
            probes[row, members] = lowered
        return probes, drop

    def _take_best(self, groups: list[np.ndarray], probes: np.ndarray, values: np.ndarray,
                   probe_j: np.ndarray) -> Asks:
        """Move to the best screened mask (or, with ``combine``, to all the moves that lowered J
        together, one more query) where it lowers J; 1 if the mask moved."""
        s, n = self.s, self.n
        best = int(np.argmin(probe_j))
        better = np.flatnonzero(probe_j < self.j)
        if len(better) > 1 and s.combine and self.used < self.budget - 2 * s.trials:
            both = self.mask.reshape(n).copy()
            for i in better:
                both[groups[i]] = probes[i, groups[i]]
            both_loss = float((yield both.reshape(1, *self.shape))[0])
            self.used += 1
            both_j = both_loss + self.regularizer(both.reshape(self.shape))[0]
            if both_j < probe_j[best]:
                self.mask, self.j, self.model_loss = both.reshape(self.shape), float(both_j), both_loss
                return 1
        if probe_j[best] < self.j:  # a screened mask is a mask J was measured at: take the best
            self.mask = probes[best].reshape(self.shape).copy()
            self.j, self.model_loss = float(probe_j[best]), float(values[best])
            return 1
        return 0

    def _enlist(self, groups: list[np.ndarray], order: list[int], probe_j: np.ndarray, gains: np.ndarray,
                room: int) -> int:
        """Add the groups that pay to the active set, best first while room is left (with
        ``neighbours``, their 4-neighbours too); how many elements were added."""
        s, n, active = self.s, self.n, self.active
        picked: list[int] = []
        for i in order:
            if (probe_j[i] >= self.j and gains[i] <= s.threshold * self.lambda2 / n) or \
                    active.sum() + len(groups[i]) > room:
                break
            active[groups[i]] = True
            picked.extend(int(m) for m in groups[i])
        added = len(picked)
        cols = self.shape[1]
        for i in picked if s.neighbours else ():
            r, c = divmod(i, cols)
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < self.shape[0] and 0 <= cc < cols and not active[rr * cols + cc] and active.sum() < room:
                    active[rr * cols + cc] = True
                    added += 1
        return added

    # -- slopes on the active set ----------------------------------------------------------------
    def choose_probes(self) -> np.ndarray | None:
        """The active elements whose slopes this step measures (none after a step that lowered
        nothing); None when the budget cannot pay for the step."""
        s = self.s
        idx = np.flatnonzero(self.active)
        per = 2 if s.central else 1
        # elements held at a bound by their last slopes are probed again only every recheck-th step
        fresh = self.steps % s.recheck == 0
        probe = idx[:0] if self.stale else idx if fresh else idx[~self.pinned[idx]]
        if self.used + per * len(probe) + s.trials > self.budget:
            if self.stale or fresh or self.used + per * len(idx[~self.pinned[idx]]) + s.trials > self.budget:
                return None
            probe = idx[~self.pinned[idx]]
        self.steps += 0 if self.stale else 1
        return probe

    def slopes(self, probe: np.ndarray) -> Asks:
        """The model part's slope along each element of ``probe``: central differences, or one
        probe towards the inside of [0, 1] (half the queries, O(c) error)."""
        s, n, mask = self.s, self.n, self.mask
        if self.stale:
            return  # nothing probed: the slopes of the unchanged mask stand
        if s.central:
            probes = np.repeat(mask.reshape(1, n), 2 * len(probe), axis=0)
            probes[np.arange(len(probe)), probe] += s.step
            probes[len(probe) + np.arange(len(probe)), probe] -= s.step
            values = yield probes.reshape(-1, *self.shape)
            self.g[probe] = (values[: len(probe)] - values[len(probe):]) / (2 * s.step)
        else:
            probes = np.repeat(mask.reshape(1, n), len(probe), axis=0)
            sign = np.where(mask.reshape(n)[probe] >= 0.5, -1.0, 1.0)
            probes[np.arange(len(probe)), probe] += sign * s.step
            values = yield probes.reshape(-1, *self.shape)
            self.g[probe] = (values - self.model_loss) / (sign * s.step)
        self.used += len(values)

    def direction(self) -> np.ndarray:
        """J's descent direction on the active set (L-BFGS's with ``memory``), scaled so that its
        largest element move is 1; zero where no element can move."""
        n, flat = self.n, self.mask.reshape(self.n)
        idx = np.flatnonzero(self.active)
        r_down, r_up = one_sided(self.regularizer, self.mask, idx)
        # R_M has kinks (at 1 for L1, where neighbours are equal for TV): of J's two one-sided
        # slopes along an element, follow the one that lowers J, if any (the model part is smooth)
        slope_down = -self.g[idx] + r_down  # rate of change of J per unit of lowering the element
        slope_up = self.g[idx] + r_up
        move = np.where(slope_down < 0, slope_down, np.where(slope_up < 0, -slope_up, 0.0))
        move[(flat[idx] <= 0.0) & (move < 0)] = 0.0
        move[(flat[idx] >= 1.0) & (move > 0)] = 0.0
        grad = np.zeros(n)
        grad[idx] = -move
        self.pinned[idx] = (move == 0.0) & ((flat[idx] <= 0.0) | (flat[idx] >= 1.0))
        if self.s.memory and not self.stale:
            self._remember(idx, flat)
        if self.s.memory and self.pairs:
            grad = quasi_newton(grad, self.pairs, flat)
        top = np.abs(grad).max()
        return -grad / top if top > 0 else np.zeros(n)

    def _remember(self, idx: np.ndarray, flat: np.ndarray) -> None:
        """L-BFGS's pair (step, change of J's gradient) on the elements inside (0, 1)."""
        n = self.n
        inside = np.zeros(n, dtype=bool)
        inside[idx] = (flat[idx] > 0.0) & (flat[idx] < 1.0)
        full = np.where(inside, self.g + self.regularizer(self.mask)[1].reshape(n), 0.0)
        if self.last is not None:
            both = inside & self.last[2]
            ds, dy = np.where(both, flat - self.last[0], 0.0), np.where(both, full - self.last[1], 0.0)
            if ds @ dy > 1e-12 * max(ds @ ds, 1e-300) ** 0.5 * max(dy @ dy, 1e-300) ** 0.5:
                self.pairs = (self.pairs + [(ds, dy)])[-self.s.memory:]
        self.last = (flat.copy(), full, inside)

    # -- line search -----------------------------------------------------------------------------
    def line_search(self, direction: np.ndarray) -> Asks:
        """``trials`` lengths along ``direction`` in one batch; the best taken if it lowers J. The
        next length follows the one taken (doubled when the longest won), else shrinks by 4 (with
        ``reuse``, below all those tried, on the same slopes)."""
        s = self.s
        if not direction.any():
            self.length /= 4.0
            return
        flat = self.mask.reshape(self.n)
        lengths = self.length * 2.0 ** np.arange(-(s.trials - 2), 2)  # ... length/2, length, 2 length
        trial = np.clip(flat[None] + lengths[:, None] * direction[None], 0.0, 1.0)
        trial_loss = yield trial.reshape(-1, *self.shape)
        self.used += s.trials
        trial_j = np.array([trial_loss[t] + self.regularizer(trial[t].reshape(self.shape))[0] for t in range(s.trials)])
        best = int(np.argmin(trial_j))
        if trial_j[best] < self.j:
            self.mask = trial[best].reshape(self.shape)
            self.j, self.model_loss = float(trial_j[best]), float(trial_loss[best])
            self.length = lengths[best] * (2.0 if best == s.trials - 1 else 1.0)
            self.stale = False
        elif s.reuse:  # the same direction again, at lengths below all those just tried
            self.length, self.stale = lengths[0] / 4.0, True
        else:
            self.length /= 4.0

    # -- re-screen -------------------------------------------------------------------------------
    def check_stall(self) -> None:
        """With ``stall``: when the last 3 steps gained little against this round's drop, set the
        step length aside (0: a screen now), since a re-screen is where the large drops come from."""
        h, s = self.history, self.s
        self.stalled = bool(s.stall and not self.quiet and len(h) - self.since > 3
                            and h[-4] - self.j < s.stall * (h[self.since] - self.j))
        if self.stalled:
            self.kept, self.length = self.length, 0.0

    def rescreen(self) -> Asks:
        """The step length shrank to nothing (or a stall): screen near the moved elements, then
        every element, then (``block_screen``) blocks. None: descend on (from ``first_length``,
        or at the length a stall set aside); else the run ends, converged or not."""
        s = self.s
        self.stale, self.since = False, len(self.history) - 1
        found = (yield from self.screen(nearby(self.mask, self.seen, s.local, s.threshold * self.lambda2 / self.n))) \
            if s.local and not np.array_equal(self.mask, self.local_at) else 0
        # the model is deterministic: a screen at the mask last screened would find the same
        if not found:
            found = 0 if np.array_equal(self.mask, self.screened_at) else (yield from self.screen())
            if found == 0 and s.block_screen > 1 and self.fine and not np.array_equal(self.mask, self.blocked_at):
                self.blocked_at = self.mask.copy()  # joint moves that no single element makes
                found = (yield from self.screen(side=s.block_screen)) or 0
        if found == 0 and self.stalled:  # only a step shrunk to nothing certifies: descend on, no more stall screens
            self.length, self.quiet = self.kept, True
            return None
        if not found:  # no new element pays (or no room to look); a screen in blocks, or none, certifies nothing
            return found == 0 and self.fine
        self.length, self.pairs, self.last, self.quiet = s.first_length, [], None, False
        return None


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
