"""SHAP values of the true class: the fast DeepLIFT path against shap.DeepExplainer, on a small real CNN."""

import numpy as np
import pytest
import torch
from torch import nn

from shapnoise.data import load_mnist, to_float
from shapnoise.explain import select_background, true_class_shap_values
from shapnoise.models import TrainConfig, predict_logits, train_cnn

# The fast path and SHAP agree to about 1e-6 here, so 1e-4 leaves room for
# float32 rounding in sums of 784 attributions.
ATOL = 1e-4


@pytest.fixture(scope="module")
def mnist(raw_dir):
    """A few hundred real MNIST training images, float in [0, 1], with labels."""
    images, labels = load_mnist(raw_dir, "train")
    return to_float(images[:800]), labels[:800]


@pytest.fixture(scope="module")
def model(mnist):
    """The pipeline's CNN after about 150 Adam steps on 600 images."""
    images, labels = mnist
    config = TrainConfig(epochs=8, batch_size=32, learning_rate=1e-3, seed=0)
    trained, _ = train_cnn(images[:600], labels[:600], config, description="test model")
    return trained


@pytest.fixture(scope="module")
def sample(mnist):
    """Six held-out images with their labels, and a background of 20 training images."""
    images, labels = mnist
    background = select_background(images[:600], size=20, seed=0)
    return images[600:606], labels[600:606], background


def expected_sums(model, images, labels, background):
    """f(x)[c] - mean_b f(b)[c]: what the SHAP values of class c must add up to."""
    logits = predict_logits(model, images)
    background_logits = predict_logits(model, background)
    return logits[np.arange(len(images)), labels] - background_logits[:, labels].mean(axis=0)


def test_select_background_is_seeded(mnist):
    images, _ = mnist
    first = select_background(images, size=50, seed=3)
    again = select_background(images, size=50, seed=3)
    other = select_background(images, size=50, seed=4)

    assert first.shape == (50, 28, 28)
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_select_background_draws_distinct_images(mnist):
    images, _ = mnist
    background = select_background(images, size=len(images), seed=0)

    np.testing.assert_array_equal(background, images)


@pytest.mark.parametrize("size", [0, -1, 801])
def test_select_background_rejects_size(mnist, size):
    images, _ = mnist
    with pytest.raises(ValueError, match=f"background size {size}"):
        select_background(images, size=size, seed=0)


def test_fast_values_shape_and_dtype(model, sample):
    images, labels, background = sample
    values = true_class_shap_values(model, images, labels, background, progress=False)

    assert values.shape == (6, 28, 28)
    assert values.dtype == np.float32
    assert np.isfinite(values).all()


def test_fast_values_follow_labels(model, sample):
    images, labels, background = sample
    other_labels = (labels + 1) % 10
    values = true_class_shap_values(model, images, labels, background, progress=False)
    other = true_class_shap_values(model, images, other_labels, background, progress=False)

    for i in range(len(images)):
        assert np.abs(values[i] - other[i]).max() > 1e-3, f"image {i}: the map does not depend on the label"
    np.testing.assert_allclose(
        other.sum(axis=(1, 2)), expected_sums(model, images, other_labels, background), atol=ATOL
    )


def test_fast_matches_shap_deep_explainer(model, sample):
    images, labels, background = sample
    # Half true labels, half others: the reference must pick the requested class, not the top one.
    mixed = labels.copy()
    mixed[::2] = (labels[::2] + 3) % 10
    fast = true_class_shap_values(model, images, mixed, background, batch_size=4, progress=False)
    reference = true_class_shap_values(
        model, images, mixed, background, implementation="shap", batch_size=4, progress=False
    )

    assert reference.shape == fast.shape
    assert np.abs(reference).max() > 100 * ATOL, "maps too small for the tolerance to mean anything"
    np.testing.assert_allclose(fast, reference, rtol=0, atol=ATOL)


def test_fast_and_reference_are_additive(model, sample):
    images, labels, background = sample
    expected = expected_sums(model, images, labels, background)
    fast = true_class_shap_values(model, images, labels, background, progress=False)
    reference = true_class_shap_values(model, images, labels, background, implementation="shap", progress=False)

    np.testing.assert_allclose(fast.sum(axis=(1, 2)), expected, rtol=0, atol=ATOL)
    np.testing.assert_allclose(reference.sum(axis=(1, 2)), expected, rtol=0, atol=ATOL)


def test_fast_ignores_batch_size(model, sample):
    images, labels, background = sample
    single = true_class_shap_values(model, images, labels, background, batch_size=1, progress=False)
    four = true_class_shap_values(model, images, labels, background, batch_size=4, progress=False)

    np.testing.assert_allclose(single, four, rtol=0, atol=1e-6)


def test_fast_restores_training_mode(model, sample):
    images, labels, background = sample
    model.train()
    try:
        true_class_shap_values(model, images[:1], labels[:1], background, progress=False)
        assert all(module.training for module in model.modules())
    finally:
        model.eval()


def test_empty_images_give_empty_values(model, sample):
    _, _, background = sample
    empty = np.zeros((0, 28, 28), dtype=np.float32)
    values = true_class_shap_values(model, empty, np.zeros(0, dtype=np.int64), background, progress=False)

    assert values.shape == (0, 28, 28)


def test_gradient_explainer_is_seeded(model, sample):
    images, labels, background = sample
    np.random.seed(123)
    state_before = np.random.get_state()[1].copy()
    first = true_class_shap_values(model, images, labels, background, explainer="gradient", progress=False)
    state_after = np.random.get_state()[1]
    again = true_class_shap_values(
        model, images, labels, background, explainer="gradient", batch_size=4, progress=False
    )

    assert first.shape == (6, 28, 28)
    assert first.dtype == np.float32
    assert np.isfinite(first).all()
    assert np.abs(first).max() > 0
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(state_before, state_after)


def test_gradient_explainer_follows_labels(model, sample):
    images, labels, background = sample
    values = true_class_shap_values(model, images[:2], labels[:2], background, explainer="gradient", progress=False)
    other = true_class_shap_values(
        model, images[:2], (labels[:2] + 1) % 10, background, explainer="gradient", progress=False
    )

    assert np.abs(values - other).max() > 1e-3


def small_mixed_model() -> nn.Sequential:
    """A random-weight chain of every layer family the fast path supports, nested once."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, kernel_size=3, padding="same"),
        nn.BatchNorm2d(4),
        nn.Tanh(),
        nn.Sequential(nn.Conv2d(4, 6, kernel_size=3, stride=2, dilation=2), nn.LeakyReLU(0.1)),
        nn.AvgPool2d(2),
        nn.ELU(),
        nn.ConvTranspose2d(6, 4, kernel_size=2, stride=2),
        nn.Softplus(),
        nn.AdaptiveAvgPool2d(5),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(100, 32),
        nn.GELU(),
        nn.Identity(),
        nn.Linear(32, 16),
        nn.Sigmoid(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():
        # Default initialisation shrinks the signal through this many layers until
        # the maps are below the tolerance; four times the weights keeps them near 0.05.
        for layer in model.modules():
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                layer.weight.mul_(4.0)
        # Non-trivial running statistics, so batch norm is not the identity.
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_fast_matches_shap_on_other_layers(sample):
    images, labels, background = sample
    model = small_mixed_model()
    fast = true_class_shap_values(model, images, labels, background, progress=False)
    reference = true_class_shap_values(model, images, labels, background, implementation="shap", progress=False)

    assert np.abs(reference).max() > 100 * ATOL, "maps too small for the tolerance to mean anything"
    np.testing.assert_allclose(fast, reference, rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        fast.sum(axis=(1, 2)), expected_sums(model, images, labels, background), rtol=0, atol=ATOL
    )


def test_fast_handles_inplace_relu(model, sample):
    images, labels, background = sample
    inplace = nn.Sequential(*[nn.ReLU(inplace=True) if isinstance(layer, nn.ReLU) else layer for layer in model])
    expected = true_class_shap_values(model, images, labels, background, progress=False)
    values = true_class_shap_values(inplace, images, labels, background, progress=False)

    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)


def test_fast_without_nonlinearity_is_additive(sample):
    images, labels, background = sample
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    values = true_class_shap_values(model, images, labels, background, progress=False)

    np.testing.assert_allclose(
        values.sum(axis=(1, 2)), expected_sums(model, images, labels, background), rtol=0, atol=ATOL
    )


def test_unsupported_layer_raises(sample):
    images, labels, background = sample
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 13 * 13, 10))
    with pytest.raises(ValueError, match=r"layer 1 \(MaxPool2d\).*implementation='shap'"):
        true_class_shap_values(model, images, labels, background, progress=False)


def test_batch_norm_without_running_stats_raises(sample):
    images, labels, background = sample
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False), nn.Flatten(), nn.Linear(2 * 26 * 26, 10)
    )
    with pytest.raises(ValueError, match=r"layer 1 \(BatchNorm2d\) has track_running_stats=False"):
        true_class_shap_values(model, images, labels, background, progress=False)


class Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_non_sequential_model_raises(sample):
    images, labels, background = sample
    with pytest.raises(TypeError, match="needs an nn.Sequential model, got Wrapped"):
        true_class_shap_values(Wrapped(), images, labels, background, progress=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"explainer": "kernel"}, "explainer 'kernel' is invalid"),
        ({"implementation": "captum"}, "implementation 'captum' is invalid"),
        ({"batch_size": 0}, "batch_size 0 is invalid"),
        ({"labels": np.array([0, 1])}, r"labels have shape \(2,\), expected \(6,\)"),
        ({"labels": np.full(6, 10)}, "labels range from 10 to 10, but the model has 10 outputs"),
        ({"labels": np.full(6, 0.5)}, "labels have dtype float64"),
        ({"background": np.zeros((5, 14, 14), np.float32)}, r"background has shape \(5, 14, 14\)"),
        ({"background": np.zeros((0, 28, 28), np.float32)}, r"background has shape \(0, 28, 28\)"),
        ({"images": np.zeros((6, 784), np.float32)}, r"images have shape \(6, 784\)"),
    ],
)
def test_invalid_arguments_raise(model, sample, change, message):
    images, labels, background = sample
    arguments = {"images": images, "labels": labels, "background": background, "progress": False, **change}
    with pytest.raises(ValueError, match=message):
        true_class_shap_values(model, **arguments)
