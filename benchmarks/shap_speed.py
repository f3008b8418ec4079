"""Time SHAP's DeepExplainer against the fast DeepLIFT path on the pipeline's generator.

Both run in one process on the same model, images and background, one after the
other, so that a machine shared with other work slows both alike. Prints the
images per second of each, their ratio and the largest absolute difference
between their SHAP values, then the fast path's rate on a larger set.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import shap
import torch

from shapnoise.data import load_mnist, to_float
from shapnoise.device import get_device
from shapnoise.explain import select_background, true_class_shap_values
from shapnoise.io import read_npz, setup_logging
from shapnoise.models import TrainConfig, load_model, train_cnn

log = logging.getLogger("shap_speed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/generators/main.pt",
                        help="generator weights, replaced by a quickly trained one when missing (default: %(default)s)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: %(default)s)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file (default: %(default)s)")
    parser.add_argument("--image-split", default="noise_source",
                        help="split whose first images are explained (default: %(default)s)")
    parser.add_argument("--background-split", default="generator",
                        help="split the background is drawn from (default: %(default)s)")
    parser.add_argument("--images", type=int, default=8,
                        help="images explained by both SHAP's DeepExplainer and the fast path. SHAP's took "
                             "0.2 to 2.5 s per image on a shared 2-core CPU (default: %(default)s)")
    parser.add_argument("--large", type=int, default=1000,
                        help="images explained by the fast path alone; 0 skips this step (default: %(default)s)")
    parser.add_argument("--background", type=int, default=100, help="background size (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="images per batch of the fast path and of captum (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the background sample (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice, usually the CPU count)")
    parser.add_argument("--no-captum", action="store_true",
                        help="skip captum's DeepLiftShap, which is also skipped when captum is not installed")
    args = parser.parse_args()
    for name in ("images", "background", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} is invalid: use 1 or more")
    if args.large < 0:
        parser.error(f"--large {args.large} is invalid: use 0 to skip the step, or more")
    return args


def load_or_train_model(path: Path, images: np.ndarray, labels: np.ndarray) -> torch.nn.Module:
    if path.exists():
        return load_model(path)
    log.warning("%s not found, so a one-epoch generator is trained on %d images instead", path, len(images))
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=1e-3, seed=0)
    model, _ = train_cnn(images, labels, config, description="benchmark model")
    return model


def images_per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(function, *args, **kwargs) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def captum_deeplift_shap(model, images, labels, background, batch_size) -> np.ndarray:
    """captum's DeepLiftShap attributions of the true class, float32 (N, 28, 28)."""
    from captum.attr import DeepLiftShap

    device = next(model.parameters()).device
    explainer = DeepLiftShap(model)
    baselines = torch.as_tensor(background).unsqueeze(1).to(device)
    chunks = []
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(images[start:start + batch_size]).unsqueeze(1).to(device)
        target = torch.as_tensor(labels[start:start + batch_size]).to(device)
        chunks.append(explainer.attribute(x, baselines=baselines, target=target).detach().squeeze(1).cpu().numpy())
    return np.concatenate(chunks)


def main() -> None:
    args = parse_args()
    setup_logging(logging.WARNING)
    # shap's reference path warns about NumPy 2 array wrapping on every batch.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # captum warns on every call that it hooks the ReLU modules for the duration of the call.
    warnings.filterwarnings("ignore", message="Setting forward, backward hooks", category=UserWarning)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    train_images, train_labels = load_mnist(args.raw, "train")
    splits = read_npz(args.splits, required=(args.image_split, args.background_split))
    source = splits[args.image_split][:max(args.images, args.large)]
    images, labels = to_float(train_images[source]), train_labels[source]
    pool = splits[args.background_split]
    background = select_background(to_float(train_images[pool]), args.background, args.seed)
    model = load_or_train_model(Path(args.model), to_float(train_images[pool]), train_labels[pool])

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"device {get_device()}, shap {shap.__version__}")
    print(f"model {args.model}; {len(images[:args.images])} images of split {args.image_split}; "
          f"background {args.background} images of split {args.background_split} (seed {args.seed})")

    small_images, small_labels = images[:args.images], labels[:args.images]
    large_images, large_labels = images[:args.large], labels[:args.large]
    common = {"background": background, "progress": False}
    # Warm-up: the first call of each path pays one-off set-up costs.
    true_class_shap_values(model, images[:1], labels[:1], implementation="shap", **common)
    true_class_shap_values(model, images[:1], labels[:1], batch_size=args.batch_size, **common)

    reference, reference_seconds = timed(
        true_class_shap_values, model, small_images, small_labels, implementation="shap", **common
    )
    fast, fast_seconds = timed(
        true_class_shap_values, model, small_images, small_labels, batch_size=args.batch_size, **common
    )
    reference_rate = images_per_second(len(small_images), reference_seconds)
    fast_rate = images_per_second(len(small_images), fast_seconds)
    print(f"shap.DeepExplainer, all outputs:  {reference_rate:9.2f} images/s")
    print(f"fast DeepLIFT, true class only:   {fast_rate:9.2f} images/s  "
          f"{fast_rate / reference_rate:6.1f}x  max abs diff {np.abs(fast - reference).max():.2e}")

    if args.no_captum:
        pass
    elif not _captum_installed():
        print("captum DeepLiftShap: skipped, captum is not installed")
    else:
        captum_deeplift_shap(model, images[:1], labels[:1], background, args.batch_size)
        attributions, captum_seconds = timed(
            captum_deeplift_shap, model, small_images, small_labels, background, args.batch_size
        )
        captum_rate = images_per_second(len(small_images), captum_seconds)
        print(f"captum DeepLiftShap, true class:  {captum_rate:9.2f} images/s  "
              f"{captum_rate / reference_rate:6.1f}x  max abs diff {np.abs(attributions - reference).max():.2e}")

    if len(large_images) > 0:
        _, large_seconds = timed(
            true_class_shap_values, model, large_images, large_labels, batch_size=args.batch_size, **common
        )
        print(f"fast DeepLIFT on {len(large_images)} images: "
              f"{images_per_second(len(large_images), large_seconds):9.2f} images/s ({large_seconds:.1f} s)")


def _captum_installed() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
