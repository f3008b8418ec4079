"""SHAP values of each image's true class: a batched DeepLIFT path and SHAP's own explainers.

``true_class_shap_values`` returns one 28x28 map per image, the SHAP values of
the output ``labels[i]`` for image ``i``. Three routes compute it:

- ``explainer="deep", implementation="fast"``: DeepLIFT with the rescale rule,
  averaged over the background, as ``shap.DeepExplainer`` (shap 0.51) defines
  it, but only for the requested class and batched over images and background.
- ``explainer="deep", implementation="shap"``: ``shap.DeepExplainer`` itself, the
  reference. It explains all outputs and the true class's map is taken from them.
- ``explainer="gradient"``: ``shap.GradientExplainer`` (expected gradients) on the
  true class's output only, seeded by ``seed``.

The DeepLIFT SHAP values of image x for output c are

    phi(x) = mean over background rows b of (x - b) * m(x, b)

where m(x, b) is the gradient of output c with each non-linearity's derivative
replaced by the secant slope (f(a_x) - f(a_b)) / (a_x - a_b) between the
activations of x and b. They add up to f(x)[c] - mean_b f(b)[c].
"""

from __future__ import annotations

import contextlib
import copy
import logging
from typing import Iterator

import numpy as np
import shap
import torch
from torch import nn
from tqdm import tqdm

log = logging.getLogger(__name__)

EXPLAINERS = ("deep", "gradient")
IMPLEMENTATIONS = ("fast", "shap")

# shap 0.51 (explainers/_deep/deep_pytorch.py, nonlinear_1d) uses the ordinary
# gradient at the background activation wherever |a_x - a_b| < 1e-6, because the
# secant slope is numerically unstable there.
RESCALE_EPSILON = 1e-6

# Expected gradients: samples per image (shap.GradientExplainer's default nsamples).
# Every image's draws use the same seed, so its map depends only on the image, its
# label, the background and the seed, not on its position or batch.
GRADIENT_SAMPLES = 200

# Layer types that are affine in eval mode. shap 0.51 leaves their gradients
# unchanged (its "linear_1d" and "passthrough" handlers), so the fast path uses
# their ordinary vector-Jacobian product.
_CONVOLUTIONS = {
    nn.Conv1d: torch.nn.grad.conv1d_input,
    nn.Conv2d: torch.nn.grad.conv2d_input,
    nn.Conv3d: torch.nn.grad.conv3d_input,
}
_RESHAPES = (nn.Flatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_OTHER_AFFINE = (
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)
_AFFINE = (nn.Linear, *_CONVOLUTIONS, *_RESHAPES, *_OTHER_AFFINE)

# Element-wise non-linearities that get the rescale rule, as in shap 0.51. Its
# Softmax handler is left out because softmax is not element-wise.
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Softplus)


def select_background(images: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Draw ``size`` distinct images without replacement, seeded, as float32 (size, 28, 28).

    The rows keep their order in ``images``, so the same images, size and seed
    always give the same background.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images have shape {images.shape}, expected (N, 28, 28)")
    if not 1 <= size <= len(images):
        raise ValueError(f"background size {size} is invalid: choose from 1 to {len(images)}, the number of images")

    rows = np.random.default_rng(seed).choice(len(images), size=size, replace=False)
    return images[np.sort(rows)].astype(np.float32)


def true_class_shap_values(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    background: np.ndarray,
    explainer: str = "deep",
    implementation: str = "fast",
    batch_size: int = 32,
    progress: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Compute the SHAP values of output ``labels[i]`` for each image ``i``: float32 (N, 28, 28).

    ``images`` (N, 28, 28) and ``background`` (B, 28, 28) are float pixels in
    [0, 1]. The work runs on the device of the model's parameters, in eval mode;
    the model's train/eval mode is restored afterwards. ``implementation`` picks
    the fast path or ``shap.DeepExplainer`` for ``explainer="deep"`` and is
    ignored for ``"gradient"``, which always runs ``shap.GradientExplainer``.
    Each step of the progress bar explains ``batch_size`` images together, and
    the fast path's memory grows with ``batch_size`` times the background size.
    ``seed`` seeds the sampling of the ``gradient`` explainer; DeepLIFT draws nothing.
    """
    if explainer not in EXPLAINERS:
        raise ValueError(f"explainer {explainer!r} is invalid: choose one of {', '.join(EXPLAINERS)}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation {implementation!r} is invalid: choose one of {', '.join(IMPLEMENTATIONS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size {batch_size} is invalid: use 1 or more images per batch")
    images, labels, background = _check_arrays(images, labels, background)

    device = _model_device(model)
    route = f"{explainer} ({implementation})" if explainer == "deep" else explainer
    log.info("SHAP values of the true class: %d images, background %d, explainer %s, device %s",
             len(images), len(background), route, device)

    shap_values = np.zeros(images.shape, dtype=np.float32)
    if len(images) == 0:
        return shap_values

    with _eval_mode(model):
        _check_labels(model, labels, background, device)
        if explainer == "gradient":
            batch_values = _GradientShap(model, background, device, seed)
        elif implementation == "shap":
            batch_values = _ReferenceDeepShap(model, background, device)
        else:
            batch_values = _FastDeepShap(model, background, device)

        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, desc=f"SHAP {route}", unit="batch", disable=not progress):
            stop = start + batch_size
            shap_values[start:stop] = batch_values(images[start:stop], labels[start:stop])

    return shap_values


def _check_arrays(
    images: np.ndarray, labels: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    background = np.asarray(background, dtype=np.float32)

    if images.ndim != 3:
        raise ValueError(f"images have shape {images.shape}, expected (N, 28, 28)")
    if labels.shape != (len(images),):
        raise ValueError(f"labels have shape {labels.shape}, expected ({len(images)},), one label per image")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels have dtype {labels.dtype}, expected integer class indices")
    if background.ndim != 3 or background.shape[1:] != images.shape[1:] or len(background) == 0:
        raise ValueError(
            f"background has shape {background.shape}, expected (B, {images.shape[1]}, {images.shape[2]}) "
            "with B >= 1; draw it with select_background"
        )
    return images, labels.astype(np.int64), background


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    if parameter is None:
        raise ValueError(f"model {type(model).__name__} has no parameters, so its device is unknown")
    return parameter.device


def _check_labels(model: nn.Module, labels: np.ndarray, background: np.ndarray, device: torch.device) -> None:
    with torch.no_grad():
        logits = model(_to_tensor(background[:1], device))
    if logits.ndim != 2:
        raise ValueError(f"model output has shape {tuple(logits.shape)}, expected (N, classes)")
    n_classes = logits.shape[1]
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels range from {labels.min()} to {labels.max()}, but the model has {n_classes} outputs "
            f"(valid labels: 0 to {n_classes - 1})"
        )


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's previous mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """Add the channel axis: (N, H, W) to a (N, 1, H, W) tensor on ``device``."""
    return torch.as_tensor(images, dtype=torch.float32).unsqueeze(1).to(device)


class _FastDeepShap:
    """DeepLIFT rescale SHAP values of one output per image, for a chain of supported layers.

    The forward pass runs images and background once each. The backward pass
    carries one gradient per (image, background row) pair, shape (n, B, ...),
    from the requested output down to the input. Affine layers apply their
    ordinary vector-Jacobian product, and each non-linearity multiplies by the
    secant slopes of its pairs.
    """

    # NOTE: tested on CPU only. On CUDA, cuDNN may run convolutions in TF32 by
    # default, which can move the maps further from shap's than the 1e-4 seen on CPU.
    def __init__(self, model: nn.Module, background: np.ndarray, device: torch.device):
        self.layers = _sequential_layers(model)
        self.background = _to_tensor(background, device)
        self.device = device
        with torch.no_grad():
            self.background_inputs, _ = _layer_inputs(self.layers, self.background)

    @torch.no_grad()
    def __call__(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        x = _to_tensor(images, self.device)
        inputs_x, logits = _layer_inputs(self.layers, x)

        # Until the first non-linearity from the top, the gradient is the same
        # for every background row, so it is carried with a background axis of 1.
        grad = nn.functional.one_hot(torch.as_tensor(labels, device=self.device), logits.shape[1])
        grad = grad.to(logits.dtype).unsqueeze(1)
        for layer, a_x, a_b in zip(reversed(self.layers), reversed(inputs_x), reversed(self.background_inputs)):
            if type(layer) in _ELEMENTWISE:
                grad = _rescale_multipliers(layer, a_x, a_b).mul_(grad)
            else:
                grad = _affine_vjp(layer, grad, a_x.shape[1:])

        # mean_b (x - b) * grad, without a tensor of deltas per pair. The
        # gradient is not yet per pair when the model has no non-linearity.
        mean_grad = grad.mean(dim=1)
        background = self.background.unsqueeze(0)
        weighted = grad.mul_(background) if grad.shape[1] == background.shape[1] else grad * background
        shap_values = x * mean_grad - weighted.mean(dim=1)
        return shap_values.squeeze(1).cpu().numpy()


def _layer_inputs(layers: list[nn.Module], x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run ``x`` through the layers; return each layer's input and the final output."""
    inputs = []
    for layer in layers:
        inputs.append(x)
        x = layer(x)
    return inputs, x


def _sequential_layers(model: nn.Module, prefix: str = "") -> list[nn.Module]:
    """List the layers of an ``nn.Sequential`` in call order, nested ones included.

    Raises for any layer the fast path has no rule for, naming it and the way out.
    """
    if type(model) is not nn.Sequential:
        raise TypeError(
            f"implementation='fast' needs an nn.Sequential model, got {type(model).__name__} "
            f"at {prefix or 'the top level'}; build the model as an nn.Sequential of layers, "
            "or use implementation='shap'"
        )

    layers = []
    for name, layer in model.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(layer) is nn.Sequential:
            layers.extend(_sequential_layers(layer, path))
            continue
        _check_supported(layer, path)
        if getattr(layer, "inplace", False):
            # The forward pass keeps each layer's input, which an in-place layer would overwrite.
            layer = copy.copy(layer)
            layer.inplace = False
        layers.append(layer)
    return layers


def _check_supported(layer: nn.Module, path: str) -> None:
    kind = type(layer)
    if kind not in _AFFINE and kind not in _ELEMENTWISE:
        supported = ", ".join(sorted(t.__name__ for t in (*_AFFINE, *_ELEMENTWISE)))
        raise ValueError(
            f"implementation='fast' does not support layer {path} ({kind.__name__}). "
            f"It supports exactly these types: {supported}. Replace the layer (a strided convolution "
            "instead of max-pooling, an nn.ReLU module instead of F.relu in a custom module), "
            "or use implementation='shap'"
        )
    if isinstance(layer, nn.modules.batchnorm._BatchNorm) and not layer.track_running_stats:
        raise ValueError(
            f"layer {path} ({kind.__name__}) has track_running_stats=False, so it normalises with batch "
            "statistics even in eval mode and is not affine; use implementation='shap'"
        )


def _rescale_multipliers(layer: nn.Module, a_x: torch.Tensor, a_b: torch.Tensor) -> torch.Tensor:
    """Return the secant slopes of an element-wise layer for every (image, background) pair: (n, B, ...)."""
    with torch.enable_grad():
        a_b_leaf = a_b.detach().requires_grad_(True)
        y_b = layer(a_b_leaf)
        (slope_b,) = torch.autograd.grad(y_b.sum(), a_b_leaf)
    y_x = layer(a_x)

    # The pair tensors are the largest of the whole computation, so the steps
    # below work in place. Division by a zero delta gives inf or nan, which the
    # fallback replaces.
    delta_in = a_x.unsqueeze(1) - a_b.unsqueeze(0)
    multipliers = y_x.unsqueeze(1) - y_b.detach().unsqueeze(0)
    multipliers.div_(delta_in)
    small = delta_in.abs_() < RESCALE_EPSILON
    return torch.where(small, slope_b.unsqueeze(0), multipliers, out=multipliers)


def _affine_vjp(layer: nn.Module, grad: torch.Tensor, input_shape: torch.Size) -> torch.Tensor:
    """Pull ``grad`` (n, k, *output shape) back through an affine layer to (n, k, *input shape)."""
    n, k = grad.shape[:2]
    kind = type(layer)
    if kind is nn.Linear:
        return grad @ layer.weight
    if kind in _RESHAPES:
        return grad.reshape(n, k, *input_shape)

    rows = grad.reshape(n * k, *grad.shape[2:])
    if kind in _CONVOLUTIONS and layer.padding_mode == "zeros" and not isinstance(layer.padding, str):
        result = _CONVOLUTIONS[kind](
            (n * k, *input_shape), layer.weight, rows,
            layer.stride, layer.padding, layer.dilation, layer.groups,
        )
    else:
        # The Jacobian of an affine map is the same at every point, so zeros will do.
        with torch.enable_grad():
            point = torch.zeros((n * k, *input_shape), dtype=grad.dtype, device=grad.device, requires_grad=True)
            (result,) = torch.autograd.grad(layer(point), point, rows)
    return result.reshape(n, k, *input_shape)


class _ReferenceDeepShap:
    """``shap.DeepExplainer`` on all outputs, keeping the true class's map (the reference).

    ``shap_values(..., ranked_outputs=1)`` is not used: in shap 0.51 its
    additivity check compares the top-ranked output's values with output 0.
    """

    def __init__(self, model: nn.Module, background: np.ndarray, device: torch.device):
        self.explainer = shap.DeepExplainer(model, _to_tensor(background, device))
        self.device = device

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        values = self.explainer.shap_values(_to_tensor(images, self.device))
        # shap 0.51 returns one array with the outputs on a trailing axis: (n, 1, H, W, outputs).
        expected = (len(images), 1, *images.shape[1:])
        if not isinstance(values, np.ndarray) or values.shape[:-1] != expected:
            found = values.shape if isinstance(values, np.ndarray) else type(values).__name__
            raise RuntimeError(
                f"shap.DeepExplainer returned {found}, expected an array of shape {expected} + (outputs,) "
                f"as in shap 0.51; install the shap version pinned in pyproject.toml (found {shap.__version__})"
            )
        return values[np.arange(len(images)), 0, :, :, labels].astype(np.float32)


class _ClassOutput(nn.Module):
    """One output column of a model, so that an explainer computes gradients of that class only."""

    def __init__(self, model: nn.Module, target: int):
        super().__init__()
        self.model = model
        self.target = target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.target:self.target + 1]


class _GradientShap:
    """``shap.GradientExplainer`` (expected gradients) of the true class, one image per call.

    One call per image with the same seed makes each map independent of the
    batch it came in. shap seeds NumPy's global generator, whose previous
    state is restored after each call.
    """

    def __init__(self, model: nn.Module, background: np.ndarray, device: torch.device, seed: int):
        self.model = model
        self.background = _to_tensor(background, device)
        self.device = device
        self.seed = seed
        self.explainers: dict[int, shap.GradientExplainer] = {}

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        x = _to_tensor(images, self.device)
        values = np.zeros(images.shape, dtype=np.float32)
        for i, label in enumerate(labels):
            values[i] = self._image_values(x[i:i + 1], int(label))
        return values

    def _image_values(self, x: torch.Tensor, label: int) -> np.ndarray:
        if label not in self.explainers:
            self.explainers[label] = shap.GradientExplainer(
                _ClassOutput(self.model, label), self.background, batch_size=GRADIENT_SAMPLES
            )
        state = np.random.get_state()
        try:
            values = self.explainers[label].shap_values(x, nsamples=GRADIENT_SAMPLES, rseed=self.seed)
        finally:
            np.random.set_state(state)
        # One output, so shap 0.51 returns shape (1, 1, H, W, 1).
        return np.asarray(values).reshape(x.shape[2:])
