"""Shared fixtures: real MNIST from a local mirror, and small real subsets of it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from shapnoise.data import MIRROR_ENV, download_mnist, load_mnist, to_float

REPO = Path(__file__).resolve().parents[1]


def mnist_mirror() -> Path:
    """Return the MNIST mirror the tests use: $MNIST_MIRROR, else ../shared/data/mnist beside the repository."""
    configured = os.environ.get(MIRROR_ENV)
    mirror = Path(configured) if configured else REPO.parent / "shared" / "data" / "mnist"
    if not (mirror / "train-images-idx3-ubyte.gz").exists() and not (mirror / "train-images-idx3-ubyte").exists():
        pytest.fail(
            f"no MNIST mirror at {mirror}; set {MIRROR_ENV} to a directory holding the four MNIST files",
            pytrace=False,
        )
    return mirror


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    """The four verified MNIST files, downloaded once per test session from the local mirror."""
    target = tmp_path_factory.mktemp("mnist") / "raw"
    download_mnist(target, mirror=str(mnist_mirror()), public_mirrors=())
    return target


@pytest.fixture(scope="session")
def small_train(raw_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first 600 MNIST training images (float in [0, 1]) and labels."""
    images, labels = load_mnist(raw_dir, "train")
    return to_float(images[:600]), labels[:600]
