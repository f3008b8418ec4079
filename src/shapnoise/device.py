"""The single place that chooses where tensors live."""

from __future__ import annotations

import torch


def get_device() -> torch.device:
    """Return CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
