"""Reading the training params shared by the generator and mixture-model stages."""

from __future__ import annotations

from shapnoise.models import TrainConfig
from shapnoise.params import Section

TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "seed")


def train_config(section: Section, seed_offset: int = 0) -> TrainConfig:
    """Validate the training keys of ``section`` and return them as a TrainConfig."""
    return TrainConfig(
        epochs=section.integer("epochs", minimum=1),
        batch_size=section.integer("batch_size", minimum=1),
        learning_rate=section.number("learning_rate", minimum=1e-8, maximum=10.0),
        seed=section.integer("seed", minimum=0) + seed_offset,
    )
