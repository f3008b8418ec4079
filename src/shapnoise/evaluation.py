"""Accuracy of the models on the evaluation sets, and its mean and spread over seeds."""

from __future__ import annotations

import math

import numpy as np

# The method's evaluation sets: I clean test images, II SHAP noise test images,
# III adversarial examples against the main generator, IV adversarial examples
# against a third generator.
PAPER_SETS = ("I", "II", "III", "IV")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Return counts[actual, predicted]."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (ddof 1; 0.0 for a single value)."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def within_spread(mean_a: float, std_a: float, mean_b: float, std_b: float) -> bool:
    """Tell whether two models' mean accuracies differ by no more than the sum of their standard deviations.

    A rough rule for "not distinguishable with these seeds", not a significance
    test. With one seed both deviations are 0, so only equal means count as within spread.
    """
    return abs(mean_a - mean_b) <= std_a + std_b


def rounded_or_none(value: float, digits: int = 2) -> float | None:
    """Round for a metrics file; NaN (an empty evaluation set) becomes None, which JSON writes as null."""
    return None if math.isnan(value) else round(value, digits)
