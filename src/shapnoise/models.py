"""The CNN used for every model in the pipeline, with seeded training and prediction."""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from shapnoise.device import get_device
from shapnoise.io import atomic_path

log = logging.getLogger(__name__)

ARCHITECTURE = "mnist_cnn_v1"


def build_cnn() -> nn.Sequential:
    """Build the two-convolution CNN: 28x28 grey image in, ten logits out.

    Every non-linearity is an ``nn.ReLU`` module, never ``F.relu``, and there is
    no max-pooling (the convolutions stride instead): SHAP's DeepExplainer and the
    fast DeepLIFT path in ``shapnoise.explain`` both attribute through ReLU modules.
    """
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=5, stride=2, padding=2),  # 16 x 14 x 14
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=5, stride=2, padding=2),  # 32 x 7 x 7
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask cuDNN for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    description: str = "train",
) -> tuple[nn.Sequential, list[dict]]:
    """Train a fresh CNN with Adam on float images in [0, 1]; return it and per-epoch history.

    The same images, labels and config give the same weights on the same
    machine and device: initialisation and batch order both come from ``config.seed``.
    """
    if len(images) == 0:
        raise ValueError(f"{description}: no training images")
    if len(images) != len(labels):
        raise ValueError(f"{description}: {len(images)} images but {len(labels)} labels")

    device = get_device()
    seed_everything(config.seed)
    model = build_cnn().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()

    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28).to(device)
    y = torch.as_tensor(labels, dtype=torch.int64).to(device)
    order_rng = torch.Generator().manual_seed(config.seed)

    history = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=order_rng).to(device)
        total_loss, correct = 0.0, 0
        batches = range(0, len(x), config.batch_size)
        progress = tqdm(batches, desc=f"{description} epoch {epoch}/{config.epochs}", unit="batch", leave=False)
        for start in progress:
            batch = order[start:start + config.batch_size]
            logits = model(x[batch])
            loss = loss_fn(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += (logits.argmax(1) == y[batch]).sum().item()
        row = {"epoch": epoch, "loss": total_loss / len(x), "train_accuracy": correct / len(x)}
        history.append(row)
        log.info("%s epoch %d/%d: loss %.4f, train accuracy %.4f",
                 description, epoch, config.epochs, row["loss"], row["train_accuracy"])

    model.eval()
    return model, history


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Return the model's logits for float images in [0, 1], shape (N, 10)."""
    device = next(model.parameters()).device
    model.eval()
    x = torch.as_tensor(images, dtype=torch.float32).reshape(-1, 1, 28, 28)
    chunks = [model(x[start:start + batch_size].to(device)).cpu() for start in range(0, len(x), batch_size)]
    if not chunks:
        return np.zeros((0, 10), dtype=np.float32)
    return torch.cat(chunks).numpy()


def predict(model: nn.Module, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Return the predicted class of each image, int64 (N,)."""
    return predict_logits(model, images, batch_size).argmax(axis=1).astype(np.int64)


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Return the fraction of images the model classifies as their label (nan for an empty set)."""
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, images) == labels).mean())


def save_model(model: nn.Module, path: str | os.PathLike, **metadata) -> None:
    """Save the weights with the architecture name and any metadata, atomically."""
    state = {key: value.cpu() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"architecture": ARCHITECTURE, "state_dict": state, "metadata": metadata}, tmp)


def load_model(path: str | os.PathLike) -> nn.Sequential:
    """Load a model saved by ``save_model`` onto the pipeline's device, in eval mode."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("architecture") != ARCHITECTURE:
        raise ValueError(
            f"{path}: architecture {checkpoint.get('architecture')!r}, expected {ARCHITECTURE!r}; "
            "retrain it with dvc repro --force on the stage that wrote it"
        )
    model = build_cnn()
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(get_device()).eval()
