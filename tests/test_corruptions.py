import numpy as np
import pytest

from shapnoise.corruptions import CORRUPTIONS, corrupt


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    base = np.zeros((16, 28, 28), dtype=np.float32)
    base[:, 8:20, 12:16] = rng.random((16, 12, 4))
    return base


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_range_shape_and_dtype(images, kind):
    for severity in (0.05, 0.3, 45.0 if kind == "rotate" else 1.0):
        out = corrupt(images, kind, severity, seed=0)
        assert out.shape == images.shape
        assert out.dtype == np.float32
        assert out.min() >= 0.0
        assert out.max() <= 1.0


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_seed_determinism(images, kind):
    severity = 30.0 if kind == "rotate" else 0.2
    assert np.array_equal(corrupt(images, kind, severity, seed=5), corrupt(images, kind, severity, seed=5))
    assert not np.array_equal(corrupt(images, kind, severity, seed=5), corrupt(images, kind, severity, seed=6))


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_severity_zero_is_identity(images, kind):
    assert np.allclose(corrupt(images, kind, 0.0, seed=0), images, atol=1e-6)


@pytest.mark.parametrize("kind, levels", [
    ("gaussian", [0.05, 0.1, 0.2, 0.4]),
    ("salt_pepper", [0.02, 0.05, 0.1, 0.3]),
    ("rotate", [5, 15, 30, 60]),
])
def test_severity_monotone(images, kind, levels):
    changes = [np.abs(corrupt(images, kind, level, seed=1) - images).mean() for level in levels]
    assert changes == sorted(changes)
    assert changes[0] < changes[-1]


@pytest.mark.parametrize("kind", ["gaussian", "salt_pepper"])
def test_noise_kinds_monotone_per_pixel(images, kind):
    # Same draws at every severity: a larger severity never changes a pixel less.
    small = np.abs(corrupt(images, kind, 0.1, seed=2) - images)
    large = np.abs(corrupt(images, kind, 0.3, seed=2) - images)
    assert (large >= small - 1e-6).all()


def test_salt_pepper_fraction(images):
    out = corrupt(np.full((50, 28, 28), 0.5, dtype=np.float32), "salt_pepper", 0.1, seed=0)
    changed = (out != 0.5).mean()
    assert 0.09 < changed < 0.11


def test_unknown_kind_and_negative_severity(images):
    with pytest.raises(ValueError, match="fog"):
        corrupt(images, "fog", 0.1, seed=0)
    with pytest.raises(ValueError, match="-0.1"):
        corrupt(images, "gaussian", -0.1, seed=0)
