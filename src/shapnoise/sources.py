"""Looking up the images and labels behind a split name."""

from __future__ import annotations

import os

import numpy as np

from shapnoise.data import load_mnist, to_float
from shapnoise.io import read_npz

# The pipeline's two kinds of noise and adversarial sources: "train" draws from a
# training split, "test" from the test subset.
SUBSETS = ("train", "test")


def split_images(
    raw_dir: str | os.PathLike, splits_path: str | os.PathLike, split: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(indices, images, labels)`` of a split; the split ``test`` indexes the MNIST test set.

    Images are float32 in [0, 1]; indices point into the MNIST file they come from.
    """
    indices = read_npz(splits_path, required=(split,))[split]
    images, labels = load_mnist(raw_dir, "test" if split == "test" else "train")
    return indices, to_float(images[indices]), labels[indices]
