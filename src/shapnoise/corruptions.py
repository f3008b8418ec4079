"""Common corruptions of test images, to measure robustness to ordinary noise.

The kinds are of the sort the MNIST-C benchmark uses: additive Gaussian noise,
salt-and-pepper (impulse) noise and rotation. Each takes float images in
[0, 1] of shape (N, 28, 28), a severity in the kind's own unit and a seed, and
returns new images in [0, 1]. For a fixed seed, a larger severity changes every
pixel at least as much as a smaller one for the two noise kinds, because both
reuse the same random draws and only scale or threshold them.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional import rotate as rotate_tensor

# Unit of each kind's severity.
CORRUPTIONS = {
    "gaussian": "standard deviation of the added noise, in pixel units of [0, 1]",
    "salt_pepper": "fraction of pixels set to black or white",
    "rotate": "rotation angle in degrees, clockwise or anticlockwise at random per image",
}


def gaussian(images: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Add zero-mean Gaussian noise of standard deviation ``severity`` and clip to [0, 1]."""
    draws = np.random.default_rng(seed).standard_normal(images.shape).astype(np.float32)
    return np.clip(images + severity * draws, 0.0, 1.0).astype(np.float32)


def salt_pepper(images: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Set a ``severity`` fraction of pixels to 0 or 1, each with probability one half."""
    rng = np.random.default_rng(seed)
    hit = rng.random(images.shape) < severity
    white = rng.random(images.shape) < 0.5
    corrupted = images.copy()
    corrupted[hit & white] = 1.0
    corrupted[hit & ~white] = 0.0
    return corrupted.astype(np.float32)


def rotate(images: np.ndarray, severity: float, seed: int) -> np.ndarray:
    """Rotate each image by ``severity`` degrees, in a random direction, with bilinear interpolation."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=len(images))
    tensor = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)
    rotated = [
        rotate_tensor(tensor[i], float(sign * severity), interpolation=InterpolationMode.BILINEAR, fill=0.0)
        for i, sign in enumerate(signs)
    ]
    if not rotated:
        return images.astype(np.float32)
    return torch.stack(rotated).reshape(-1, 28, 28).clamp(0.0, 1.0).numpy()


_FUNCTIONS = {"gaussian": gaussian, "salt_pepper": salt_pepper, "rotate": rotate}


def corrupt(images: np.ndarray, kind: str, severity: float, seed: int) -> np.ndarray:
    """Apply corruption ``kind`` at ``severity``; raise ValueError for an unknown kind."""
    if kind not in _FUNCTIONS:
        raise ValueError(f"unknown corruption {kind!r}; expected one of {', '.join(_FUNCTIONS)}")
    if severity < 0:
        raise ValueError(f"corruption severity {severity} is negative")
    return _FUNCTIONS[kind](images, severity, seed)
