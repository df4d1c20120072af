"""The masking operator Q(X; M) = X*M' + h(X)*(1-M') (paper Eq. 1), batched over masks.

h is a Gaussian blur (sigma 5, kernel 11) computed once per image; M' is the bilinear
upsampling of the low-resolution mask with half-pixel centres (as ONNX Resize and PyTorch's
``align_corners=False``). Everything happens in the image's 0-1 RGB space, before the model's
own normalisation. Since Q = h(X) + (X - h(X))*M', one call costs one multiply-add per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..defaults import KERNEL, MASK_SIZE, SIGMA
from ..errors import OptionError

MASK_SHAPE = (MASK_SIZE, MASK_SIZE)


def blur(image: np.ndarray, sigma: float = SIGMA, kernel: int = KERNEL) -> np.ndarray:
    """Gaussian blur of an ``(H, W, C)`` image with an odd ``kernel`` size (edges mirrored)."""
    if kernel < 1 or kernel % 2 == 0:
        raise OptionError(f"kernel size must be odd and positive, not {kernel}")
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    from scipy.ndimage import gaussian_filter  # imported here: keeps every CLI start fast

    radius = kernel // 2
    out = gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0), truncate=radius / sigma,
                          mode="mirror")
    return out.astype(np.float32)


@lru_cache(maxsize=64)
def linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D linear interpolation ``src -> dst`` with half-pixel centres, edges clamped.

    Returns ``(i0, i1, w1)``: output ``j`` is ``(1 - w1[j]) * in[i0[j]] + w1[j] * in[i1[j]]``.
    Cached: every explain step upsamples with the same taps (read only).
    """
    x = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
    i0 = np.minimum(np.floor(x).astype(np.intp), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    taps = (i0, i1, (x - i0).astype(np.float32))
    for a in taps:
        a.flags.writeable = False
    return taps


def upsample(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``(..., h, w)`` masks to ``(..., H, W)``.

    Gathers and blends instead of multiplying by interpolation matrices: no BLAS call, whose
    idle worker threads would otherwise compete with onnxruntime's for the same cores.
    """
    m = np.asarray(masks, dtype=np.float32)
    r0, r1, rw = linear_taps(m.shape[-2], size[0])
    c0, c1, cw = linear_taps(m.shape[-1], size[1])
    cols = m[..., c0] + (m[..., c1] - m[..., c0]) * cw  # (..., h, W): small
    lo, hi = cols[..., r0, :], cols[..., r1, :]  # whole-row copies
    hi -= lo
    hi *= rw[:, None]
    hi += lo
    return hi


@dataclass(frozen=True)
class BlurSpec:
    sigma: float = SIGMA
    kernel: int = KERNEL


class Perturber:
    """Q(X; M) for one image and any batch of masks of one shape."""

    def __init__(self, image: np.ndarray, mask_shape: tuple[int, int] = MASK_SHAPE, blur_spec: BlurSpec = BlurSpec()):
        self.image = np.ascontiguousarray(image, dtype=np.float32)
        self.blurred = blur(self.image, blur_spec.sigma, blur_spec.kernel)
        self.delta = self.image - self.blurred
        self.mask_shape = tuple(mask_shape)
        self.size = self.image.shape[:2]

    def upsample(self, masks: np.ndarray) -> np.ndarray:
        """M' for ``(B, h, w)`` or ``(h, w)`` masks."""
        return upsample(masks, self.size)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Perturbed images ``(B, H, W, 3)`` for masks ``(B, h, w)`` (a single mask gives ``(H, W, 3)``)."""
        up = self.upsample(masks)
        return self.blurred + self.delta * up[..., None]
