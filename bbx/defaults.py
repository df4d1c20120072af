"""Every default of bbx, written once: the paper's settings (Sect. 4.1) and bbx's own.

The dataclasses that carry these values (:class:`bbx.config.ExplainConfig`,
:class:`bbx.maths.perturb.BlurSpec`, :class:`bbx.maths.objective.Objective`, :class:`bbx.maths.optimize.Adam`) take
their defaults from here, and the command line leaves an option unset unless it is given, so a
value changed here changes everywhere.
"""

from __future__ import annotations

# -- the paper's settings ----------------------------------------------------------------------
SIGMA = 5.0  # Gaussian blur h of Q(X; M)
KERNEL = 11
MASK_SIZE = 28  # M is MASK_SIZE x MASK_SIZE, upsampled bilinearly to the input
LAMBDA1 = 1.7  # weight of TV_beta(M)
LAMBDA2 = 3.0  # weight of ||1 - M||_1
BETA = 2.0  # TV exponent
GAMMA = 0.3  # weight of the F-TC / F-NTC logit term
LR = 0.1  # Adam's step size
ITERATIONS = 200  # optimiser steps
THRESHOLD = 0.6  # a pixel is undesirable where 1 - M' exceeds this (Table 2)

# -- bbx's own ---------------------------------------------------------------------------------
# what bbx explain runs when no method is named: of the methods that keep φ at occlusion's or above on photos
# without a confound, the one that points at a known confound most often (docs/reproduce.md, "Levers, round 4")
METHOD = "rise_lead"
# what bbx audit runs unless told: the gallery's method, the two baselines its curve is read against,
# and the heatmaps its recurring-regions test reads
AUDIT_METHODS = (METHOD, "occlusion", "rise", "random")
# the recurring-regions test reads this method's heatmaps where the audit ran it (else the gallery's):
# averaged over random contexts, they marked a real overlay across photos more often than greedy's (docs/audit.md)
RECURRING_METHOD = "rise"
BETA1 = 0.99  # Adam's momentum, a time prior over noisy estimates (docs/reproduce.md)
BETA2 = 0.999
PAIRS = 8  # antithetic pairs per step when neither pairs nor a budget is given
ESTIMATOR = "active"  # measured against nes and spsa: docs/reproduce.md
PROBE_STEP = 0.1  # finite-difference step c, in mask units
QUERY_PATH = "auto"
SEED = 0
PATCH = 16  # occlusion's cell, pixels
GREEDY_BUDGET = 2000  # greedy's queries when no budget is given
RISE_BUDGET = 2000  # rise's queries when no budget is given
RISE_GRID = 7  # RISE's binary grid side (Petsiuk et al.: 7 x 7 on 224 px)
RISE_KEEP = 0.5  # probability that a RISE cell is kept
RISE_GREEDY_SHARE = 0.5  # rise_greedy: share of the budget spent on its RISE prior (the rest: the search)
RISE_FIRST_SHARE = 0.25  # rise_first: share of the budget spent on the RISE masks that pick its first window
RISE_FIRST_GATE = 0.5  # rise_first: that window goes first when blurring it gains this share of occlusion's best cell
RISE_LEAD_SHARE = 0.25  # rise_lead: share of the budget spent on the RISE masks that rate its lead windows
RISE_LEAD_WINDOWS = 32  # rise_lead: RISE's worst windows blurred alone; the best-paying one leads the search
STEADY_TIE = 0.25  # greedy_steady: gains within this share of the best count as tied (the prior decides)
RANKED_RISE_SHARE = 0.5  # greedy_ranked: share of the budget spent on the RISE masks that rank greedy's cells
GREEDY_AREA = 0.10  # share of the image greedy blurs before it stops
GREEDY_STRIDE = 8
GREEDY_WINDOW = 16
EVAL_SEEDS = 3  # bbx evaluate's runs per image of a seeded method
PHI_MIN_RESIDUAL = 1e-3  # below this 1 - f_h(X), φ is shown with its raw probabilities (unstable)
EMPTY_MASK = 1e-3  # a mask whose every cell is within this of 1 blurred nothing

# -- the active optimiser's settings (bbx.maths.active.ActiveSet; chosen on the tuning photos: docs/reproduce.md)
ACTIVE_SCREEN_STEP = 0.5  # how far one element is lowered from 1 to screen it
ACTIVE_STEP = 0.05  # central-difference step on active elements
ACTIVE_THRESHOLD = 0.5  # an element is a candidate when its screened gain > threshold x its L1 cost
ACTIVE_MAX_ACTIVE = 48
ACTIVE_TRIALS = 4  # step lengths scored per step, in one batch
ACTIVE_FIRST_LENGTH = 0.25  # the longest element move of the first step
ACTIVE_MIN_STEP = 1e-3
ACTIVE_RECHECK = 1  # elements pinned at a bound are probed every recheck-th step only (1: every step)
ACTIVE_COMBINE = False  # also try all the screened moves that lowered J on their own, together
ACTIVE_NEIGHBOURS = False  # add the 4-neighbours of each candidate while room is left
ACTIVE_CENTRAL = False  # central differences (2 queries per element), else one-sided (1)
ACTIVE_REUSE = True  # a step that lowered nothing keeps its slopes (same mask) and tries shorter lengths only
ACTIVE_LOCAL = 1  # > 0: a re-screen looks first only near moved elements (this many away) and at earlier candidates
ACTIVE_MEMORY = 0  # > 0: L-BFGS directions from this many past steps (elements inside (0, 1)), else steepest
ACTIVE_STALL = 0.1  # > 0: screen early once 3 steps lowered J by < stall x the drop since the last screen
ACTIVE_BLOCK_SCREEN = 0  # > 1: when a screen of every element finds nothing, screen blocks of this side too
ACTIVE_ROOM_STEPS = 0  # > 0: the set may grow past max_active to what lets this many steps fit in the budget left

# -- ground-truth localisation (bbx/result/localisation.py, docs/localisation.md) -----------------
POINTING_TOLERANCE = 15  # px at the photo's size; Zhang et al. (2018)'s pointing game allows 15 px
TOP_PERCENTS = (1, 5, 10)  # top-k % of the heatmap's pixels whose share inside the region is reported
