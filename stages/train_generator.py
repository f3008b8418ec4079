"""DVC stage: train one generator CNN on its split and measure it on the MNIST test set."""

import argparse

from shapnoise.data import load_mnist, to_float
from shapnoise.io import read_npz, write_json
from shapnoise.models import accuracy, save_model, train_cnn
from shapnoise.params import load_section
from shapnoise.stage import run_stage
from shapnoise.training import TRAIN_KEYS, train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="generator name, for logs and metrics (main, b or c)")
    parser.add_argument("--split", required=True, help="key of the training split in the splits file")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--model", required=True, help="output path of the weights (.pt)")
    parser.add_argument("--metrics", required=True, help="output JSON with the test accuracy")
    parser.add_argument("--history", required=True, help="output JSON with loss and accuracy per epoch")
    args = parser.parse_args()

    params = load_section("generator", args.params)
    params.check_keys(TRAIN_KEYS)
    config = train_config(params)

    train_images, train_labels = load_mnist(args.raw, "train")
    test_images, test_labels = load_mnist(args.raw, "test")
    indices = read_npz(args.splits, required=(args.split,))[args.split]

    model, history = train_cnn(
        to_float(train_images[indices]), train_labels[indices], config, description=f"generator {args.name}"
    )
    test_accuracy = accuracy(model, to_float(test_images), test_labels)

    save_model(model, args.model, name=args.name, split=args.split, train_images=int(len(indices)))
    write_json(args.history, history)
    write_json(args.metrics, {
        "test_accuracy": round(test_accuracy, 6),
        "train_images": int(len(indices)),
        "epochs": config.epochs,
    })


if __name__ == "__main__":
    run_stage("train_generator", main)
