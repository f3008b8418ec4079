"""SHAP noise: move pixels towards their inverse where the SHAP evidence for the true class lies.

All images are float arrays in [0, 1] of shape (N, 28, 28). ``shap_values`` are
the maps of each image's true class, of the same shape.
"""

from __future__ import annotations

import numpy as np

ALGORITHMS = ("weighted", "top_k")


def positive_weights(shap_values: np.ndarray) -> np.ndarray:
    """Return the positive part of each map divided by its maximum, in [0, 1].

    A map without any positive value gives all-zero weights, so its image is left unchanged.
    """
    positive = np.clip(shap_values, 0.0, None)
    peak = positive.reshape(len(positive), -1).max(axis=1).reshape(-1, 1, 1)
    return np.divide(positive, peak, out=np.zeros_like(positive), where=peak > 0).astype(np.float32)


def top_k_mask(shap_values: np.ndarray, fraction: float) -> np.ndarray:
    """Return 1.0 on the ``fraction`` of pixels with the largest positive SHAP values of each map, else 0.0.

    The number of pixels is ``round(fraction * 784)``. Pixels with a SHAP value of
    zero or less are never selected, so a map with little positive evidence selects fewer.
    Ties at the threshold are broken by pixel order (a stable sort), which keeps the result deterministic.
    """
    n_images = len(shap_values)
    flat = shap_values.reshape(n_images, -1)
    k = int(round(fraction * flat.shape[1]))
    mask = np.zeros_like(flat, dtype=np.float32)
    if k > 0:
        order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
        rows = np.arange(n_images)[:, None]
        mask[rows, order] = 1.0
        mask *= flat > 0
    return mask.reshape(shap_values.shape)


def invert_towards(images: np.ndarray, weights: np.ndarray, strength: float) -> np.ndarray:
    """Return ``x + strength * w * (1 - 2x)``: each pixel moves towards ``1 - x`` by ``strength * w``.

    With ``strength`` and ``w`` in [0, 1] the result is a convex combination of
    ``x`` and ``1 - x``, so it stays in [0, 1]; the final clip only removes rounding error.
    """
    if images.shape != weights.shape:
        raise ValueError(f"images have shape {images.shape} but weights have shape {weights.shape}")
    noisy = images + strength * weights * (1.0 - 2.0 * images)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def shap_noise(
    images: np.ndarray,
    shap_values: np.ndarray,
    algorithm: str,
    strength: float,
    top_fraction: float = 0.1,
) -> np.ndarray:
    """Apply one SHAP noise algorithm.

    ``weighted``: every pixel moves towards its inverse in proportion to its
    normalised positive SHAP value. ``top_k``: only the ``top_fraction`` of pixels
    with the largest SHAP values move, all by ``strength``.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"noise strength {strength} is outside [0, 1]")
    if images.shape != shap_values.shape:
        raise ValueError(f"images have shape {images.shape} but SHAP values have shape {shap_values.shape}")
    if algorithm == "weighted":
        weights = positive_weights(shap_values)
    elif algorithm == "top_k":
        if not 0.0 <= top_fraction <= 1.0:
            raise ValueError(f"top_fraction {top_fraction} is outside [0, 1]")
        weights = top_k_mask(shap_values, top_fraction)
    else:
        raise ValueError(f"unknown noise algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    return invert_towards(images, weights, strength)


def misclassified(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return the boolean mask of images whose prediction differs from their original label."""
    return predictions != labels


def filter_counts(labels: np.ndarray, keep: np.ndarray) -> dict:
    """Count kept images overall and per digit, with the kept fraction (nan-free: 0 for an empty digit)."""
    per_digit = {}
    for digit in range(10):
        total = int((labels == digit).sum())
        kept = int((keep & (labels == digit)).sum())
        per_digit[str(digit)] = {"total": total, "kept": kept, "rate": round(kept / total, 6) if total else 0.0}
    total = int(len(labels))
    kept = int(keep.sum())
    return {"total": total, "kept": kept, "rate": round(kept / total, 6) if total else 0.0, "per_digit": per_digit}
