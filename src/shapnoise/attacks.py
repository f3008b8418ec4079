"""Adversarial examples: FGSM and PGD in the L-infinity ball, untargeted, for images in [0, 1].

Written here instead of taken from an attack library: the two attacks are a few
lines of autograd each, and torchattacks (the common choice) had its last
release in October 2023.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

ATTACKS = ("fgsm", "pgd")


def _loss_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y)
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Take one signed-gradient step of size ``epsilon`` that increases the loss of the true label."""
    return (x + epsilon * _loss_gradient(model, x, y).sign()).clamp(0.0, 1.0).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epsilon: float,
    steps: int,
    step_size: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Run projected gradient descent from a uniform random start inside the epsilon ball."""
    start = torch.empty(x.shape).uniform_(-epsilon, epsilon, generator=generator).to(x.device)
    adversarial = (x + start).clamp(0.0, 1.0)
    for _ in range(steps):
        adversarial = adversarial + step_size * _loss_gradient(model, adversarial, y).sign()
        adversarial = torch.max(torch.min(adversarial, x + epsilon), x - epsilon).clamp(0.0, 1.0).detach()
    return adversarial


def generate_adversarial(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    attack: str,
    epsilon: float,
    steps: int = 10,
    step_size: float = 0.01,
    seed: int = 0,
    batch_size: int = 500,
) -> np.ndarray:
    """Attack every image against ``model``; return float32 (N, 28, 28) adversarial examples in [0, 1].

    Every returned image differs from its source by at most ``epsilon`` per pixel.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; expected one of {', '.join(ATTACKS)}")
    device = next(model.parameters()).device
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)

    results = []
    for start in tqdm(range(0, len(images), batch_size), desc=f"{attack} eps={epsilon}", unit="batch", leave=False):
        x = torch.as_tensor(images[start:start + batch_size], dtype=torch.float32).reshape(-1, 1, 28, 28).to(device)
        y = torch.as_tensor(labels[start:start + batch_size], dtype=torch.int64).to(device)
        if attack == "fgsm":
            adversarial = fgsm(model, x, y, epsilon)
        else:
            adversarial = pgd(model, x, y, epsilon, steps, step_size, generator)
        results.append(adversarial.reshape(-1, 28, 28).cpu().numpy())
    if not results:
        return np.zeros((0, 28, 28), dtype=np.float32)
    return np.concatenate(results).astype(np.float32)
