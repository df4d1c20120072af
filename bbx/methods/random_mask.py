"""A random mask: the floor any explanation must clear.

A uniform random ``mask_size``-square mask, stretched to span [0, 1], used like a learned one:
same resolution, bilinear upsampling and soft operator Q(X; M') as the paper's methods, so its
top-a% regions are blobs of the methods' own scale. The mask is drawn from the seed combined
with the photo (:meth:`Context.rng`): one seed gives each photo its own mask. Queries: 2 (the image, the perturbed image).
"""

from __future__ import annotations

import numpy as np

from ..config import ExplainConfig
from ..result.explanation import Explanation
from ..maths.perturb import BlurSpec, Perturber
from .context import Context
from .registry import Method, register


def random_mask(ctx: Context, cfg: ExplainConfig) -> Explanation:
    ctx.require(2, "the image and the perturbed image")
    noise = ctx.rng(cfg.seed).random((cfg.mask_size, cfg.mask_size))  # the seed with the photo
    span = noise.max() - noise.min()
    mask = 1.0 - (noise - noise.min()) / (span if span > 0 else 1.0)
    pert = Perturber(ctx.image, mask.shape, BlurSpec(cfg.sigma, cfg.kernel))
    perturbed = pert(mask.astype(np.float32))
    heatmap = 1.0 - pert.upsample(mask.astype(np.float32))
    config = {"method": "random", "seed": cfg.seed, "mask_size": cfg.mask_size, "sigma": cfg.sigma,
              "kernel": cfg.kernel}
    return ctx.finish(mask=mask, heatmap=heatmap, perturbed=perturbed, config=config)


register(Method(
    name="random", run=random_mask, options=("mask_size",), seeded=True,
    summary="a random mask: the floor", default_budget="2", needs="topk",
))
