"""The masking operator Q(X; M) = X*M' + h(X)*(1-M') (paper Eq. 1), batched over masks.

h is a Gaussian blur (sigma 5, kernel 11) computed once per image; M' is the bilinear
upsampling of the low-resolution mask with half-pixel centres (as ONNX Resize and PyTorch's
``align_corners=False``). Everything happens in the image's 0-1 RGB space, before the model's
own normalisation. Since Q = h(X) + (X - h(X))*M', one call costs one multiply-add per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

MASK_SHAPE = (28, 28)


def blur(image: np.ndarray, sigma: float = 5.0, kernel: int = 11) -> np.ndarray:
    """Gaussian blur of an ``(H, W, C)`` image with an odd ``kernel`` size (edges mirrored)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {kernel}")
    if sigma <= 0:
        return image.astype(np.float32, copy=True)
    radius = kernel // 2
    out = gaussian_filter(image.astype(np.float32), sigma=(sigma, sigma, 0), truncate=radius / sigma,
                          mode="mirror")
    return out.astype(np.float32)


def interpolation_matrix(src: int, dst: int) -> np.ndarray:
    """``(dst, src)`` matrix of 1-D linear interpolation with half-pixel centres, edges clamped."""
    a = np.zeros((dst, src), dtype=np.float64)
    scale = src / dst
    for i in range(dst):
        x = max((i + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(np.floor(x)), src - 1)
        i1 = min(i0 + 1, src - 1)
        w1 = x - i0
        a[i, i0] += 1.0 - w1
        a[i, i1] += w1
    return a


def upsample(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of ``(..., h, w)`` masks to ``(..., H, W)``."""
    h, w = masks.shape[-2:]
    ah = interpolation_matrix(h, size[0]).astype(np.float32)
    aw = interpolation_matrix(w, size[1]).astype(np.float32)
    return ah @ masks.astype(np.float32) @ aw.T


@dataclass(frozen=True)
class BlurSpec:
    sigma: float = 5.0
    kernel: int = 11


class Perturber:
    """Q(X; M) for one image and any batch of masks of one shape."""

    def __init__(self, image: np.ndarray, mask_shape: tuple[int, int] = MASK_SHAPE, blur_spec: BlurSpec = BlurSpec()):
        self.image = np.ascontiguousarray(image, dtype=np.float32)
        self.blurred = blur(self.image, blur_spec.sigma, blur_spec.kernel)
        self.delta = self.image - self.blurred
        self.mask_shape = tuple(mask_shape)
        H, W = self.image.shape[:2]
        self._ah = interpolation_matrix(mask_shape[0], H).astype(np.float32)
        self._awt = interpolation_matrix(mask_shape[1], W).T.astype(np.float32).copy()

    def upsample(self, masks: np.ndarray) -> np.ndarray:
        """M' for ``(B, h, w)`` or ``(h, w)`` masks."""
        return self._ah @ np.asarray(masks, dtype=np.float32) @ self._awt

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Perturbed images ``(B, H, W, 3)`` for masks ``(B, h, w)`` (a single mask gives ``(H, W, 3)``)."""
        up = self.upsample(masks)
        return self.blurred + self.delta * up[..., None]
