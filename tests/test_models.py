import numpy as np
import torch

from shapnoise.models import TrainConfig, accuracy, load_model, predict, save_model, train_cnn

CONFIG = TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, seed=7)


def test_training_is_deterministic(small_train):
    images, labels = small_train
    first, history_first = train_cnn(images, labels, CONFIG)
    second, history_second = train_cnn(images, labels, CONFIG)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert history_first == history_second


def test_other_seed_gives_other_weights(small_train):
    images, labels = small_train
    first, _ = train_cnn(images, labels, CONFIG)
    other, _ = train_cnn(images, labels, TrainConfig(1, 32, 1e-3, seed=8))
    assert not torch.equal(first[0].weight, other[0].weight)


def test_one_epoch_learns(small_train):
    images, labels = small_train
    model, history = train_cnn(images, labels, TrainConfig(epochs=2, batch_size=32, learning_rate=2e-3, seed=0))
    # Ten classes: chance is 10%; two epochs on 600 images reach far more.
    assert accuracy(model, images, labels) > 0.6
    assert history[1]["loss"] < history[0]["loss"]


def test_save_and_load_round_trip(tmp_path, small_train):
    images, labels = small_train
    model, _ = train_cnn(images[:64], labels[:64], CONFIG)
    save_model(model, tmp_path / "m.pt", name="x")
    loaded = load_model(tmp_path / "m.pt")
    assert np.array_equal(predict(model, images), predict(loaded, images))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]
