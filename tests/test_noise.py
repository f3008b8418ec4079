import numpy as np
import pytest

from shapnoise.noise import filter_counts, misclassified, positive_weights, shap_noise, top_k_mask


def images_and_maps():
    images = np.array([[[0.0, 1.0], [0.25, 0.5]], [[1.0, 1.0], [0.0, 0.0]]], dtype=np.float32)
    maps = np.array([[[2.0, 1.0], [-1.0, 0.0]], [[-3.0, -1.0], [-2.0, -0.5]]], dtype=np.float32)
    return images, maps


def test_positive_weights_normalised_per_image():
    _, maps = images_and_maps()
    weights = positive_weights(maps)
    assert weights[0].tolist() == [[1.0, 0.5], [0.0, 0.0]]
    # No positive evidence at all: nothing moves.
    assert weights[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_weighted_moves_towards_inverse():
    images, maps = images_and_maps()
    noisy = shap_noise(images, maps, "weighted", strength=1.0)
    assert noisy[0, 0, 0] == 1.0   # dark pixel, full weight: becomes white
    assert noisy[0, 0, 1] == 0.5   # white pixel, half weight: halfway to black
    assert noisy[0, 1, 0] == 0.25  # negative SHAP: unchanged
    assert np.array_equal(noisy[1], images[1])


def test_weighted_strength_scales_move():
    images, maps = images_and_maps()
    half = shap_noise(images, maps, "weighted", strength=0.5)
    assert half[0, 0, 0] == pytest.approx(0.5)
    assert half[0, 0, 1] == pytest.approx(0.75)


@pytest.mark.parametrize("algorithm", ["weighted", "top_k"])
def test_strength_zero_is_identity(algorithm):
    rng = np.random.default_rng(0)
    images = rng.random((5, 28, 28)).astype(np.float32)
    maps = rng.standard_normal((5, 28, 28)).astype(np.float32)
    assert np.array_equal(shap_noise(images, maps, algorithm, strength=0.0, top_fraction=0.3), images)


@pytest.mark.parametrize("algorithm", ["weighted", "top_k"])
def test_output_stays_in_unit_range(algorithm):
    rng = np.random.default_rng(1)
    images = rng.random((20, 28, 28)).astype(np.float32)
    maps = rng.standard_normal((20, 28, 28)).astype(np.float32) * 100
    for strength in (0.3, 1.0):
        noisy = shap_noise(images, maps, algorithm, strength=strength, top_fraction=0.5)
        assert noisy.min() >= 0.0
        assert noisy.max() <= 1.0
        assert noisy.dtype == np.float32


def test_top_k_inverts_only_the_top_pixels():
    images = np.zeros((1, 28, 28), dtype=np.float32)
    maps = np.zeros((1, 28, 28), dtype=np.float32)
    maps[0, 0, :10] = np.arange(10, 0, -1)  # ten positive pixels, largest first
    mask = top_k_mask(maps, fraction=5 / 784)
    assert mask.sum() == 5
    assert mask[0, 0, :5].tolist() == [1.0] * 5
    noisy = shap_noise(images, maps, "top_k", strength=1.0, top_fraction=5 / 784)
    assert noisy.sum() == 5.0


def test_top_k_never_selects_non_positive_pixels():
    maps = -np.ones((2, 28, 28), dtype=np.float32)
    maps[0, 3, 3] = 0.5
    mask = top_k_mask(maps, fraction=0.5)
    assert mask[0].sum() == 1
    assert mask[1].sum() == 0


def test_unknown_algorithm_and_bad_strength():
    images, maps = images_and_maps()
    with pytest.raises(ValueError, match="blur"):
        shap_noise(images, maps, "blur", strength=1.0)
    with pytest.raises(ValueError, match="1.5"):
        shap_noise(images, maps, "weighted", strength=1.5)
    with pytest.raises(ValueError, match="shape"):
        shap_noise(images, maps[:1], "weighted", strength=1.0)


def test_filter_counts_per_digit():
    labels = np.array([0, 0, 1, 1, 1, 2])
    predictions = np.array([0, 5, 7, 1, 9, 2])
    keep = misclassified(predictions, labels)
    assert keep.tolist() == [False, True, True, False, True, False]
    counts = filter_counts(labels, keep)
    assert counts["total"] == 6
    assert counts["kept"] == 3
    assert counts["rate"] == 0.5
    assert counts["per_digit"]["0"] == {"total": 2, "kept": 1, "rate": 0.5}
    assert counts["per_digit"]["1"]["kept"] == 2
    assert counts["per_digit"]["2"]["rate"] == 0.0
    assert counts["per_digit"]["9"] == {"total": 0, "kept": 0, "rate": 0.0}
