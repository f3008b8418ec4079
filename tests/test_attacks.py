import numpy as np
import pytest

from shapnoise.attacks import generate_adversarial
from shapnoise.models import TrainConfig, accuracy, train_cnn


@pytest.fixture(scope="module")
def trained(small_train):
    images, labels = small_train
    model, _ = train_cnn(images, labels, TrainConfig(epochs=3, batch_size=32, learning_rate=2e-3, seed=0))
    return model, images[:200], labels[:200]


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attack_stays_within_epsilon_and_range(trained, attack):
    model, images, labels = trained
    adversarial = generate_adversarial(model, images, labels, attack, epsilon=0.15, steps=5, step_size=0.05, seed=0)
    assert adversarial.shape == images.shape
    assert np.abs(adversarial - images).max() <= 0.15 + 1e-6
    assert adversarial.min() >= 0.0
    assert adversarial.max() <= 1.0


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_attack_lowers_accuracy(trained, attack):
    model, images, labels = trained
    adversarial = generate_adversarial(model, images, labels, attack, epsilon=0.2, steps=10, step_size=0.05, seed=0)
    clean = accuracy(model, images, labels)
    attacked = accuracy(model, adversarial, labels)
    assert attacked < clean - 0.2


def test_pgd_at_least_as_strong_as_fgsm(trained):
    model, images, labels = trained
    fgsm = generate_adversarial(model, images, labels, "fgsm", epsilon=0.1)
    pgd = generate_adversarial(model, images, labels, "pgd", epsilon=0.1, steps=20, step_size=0.02, seed=0)
    assert accuracy(model, pgd, labels) <= accuracy(model, fgsm, labels)


def test_pgd_seeded(trained):
    model, images, labels = trained
    first = generate_adversarial(model, images[:20], labels[:20], "pgd", epsilon=0.1, steps=3, step_size=0.05, seed=4)
    second = generate_adversarial(model, images[:20], labels[:20], "pgd", epsilon=0.1, steps=3, step_size=0.05, seed=4)
    assert np.array_equal(first, second)


def test_epsilon_zero_fgsm_is_identity(trained):
    model, images, labels = trained
    assert np.array_equal(generate_adversarial(model, images, labels, "fgsm", epsilon=0.0), images)


def test_unknown_attack(trained):
    model, images, labels = trained
    with pytest.raises(ValueError, match="cw"):
        generate_adversarial(model, images, labels, "cw", epsilon=0.1)
