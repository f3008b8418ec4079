"""DVC stage: train one model of the comparison on its mixture of training sources, once per seed."""

import argparse

from shapnoise.io import atomic_dir, read_npz, write_json
from shapnoise.mixtures import SourceData, assemble, resolve_counts
from shapnoise.models import save_model, train_cnn
from shapnoise.params import load_section
from shapnoise.sources import split_images
from shapnoise.stage import run_stage
from shapnoise.training import TRAIN_KEYS, train_config


def load_source(path: str) -> SourceData:
    arrays = read_npz(path, required=("indices", "images", "labels"))
    return SourceData(arrays["images"], arrays["labels"], arrays["indices"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="model name, a key of train_model.mixtures (e.g. model_2)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--shap-noise", required=True, help="relabelled SHAP noise training images (.npz)")
    parser.add_argument("--adversarial-main", required=True, help="adversarial examples 3 (.npz)")
    parser.add_argument("--adversarial-b", required=True, help="adversarial examples 4 (.npz)")
    parser.add_argument("--out", required=True, help="output directory, one seed_<n>.pt per seed")
    parser.add_argument("--metrics", required=True, help="output JSON with the image count of each source")
    args = parser.parse_args()

    params = load_section("train_model", args.params)
    params.check_keys([*TRAIN_KEYS, "seeds", "mixtures"])
    n_seeds = params.integer("seeds", minimum=1)
    mixture = params.section("mixtures").section(args.name)

    clean_indices, clean_images, clean_labels = split_images(args.raw, args.splits, "clean")
    sources = {
        "clean": SourceData(clean_images, clean_labels, clean_indices),
        "shap_noise": load_source(args.shap_noise),
        "adversarial_main": load_source(args.adversarial_main),
        "adversarial_b": load_source(args.adversarial_b),
    }
    counts = resolve_counts(mixture, {name: len(data.labels) for name, data in sources.items()})

    with atomic_dir(args.out) as out_dir:
        for offset in range(n_seeds):
            config = train_config(params, seed_offset=offset)
            images, labels, _ = assemble(sources, counts, config.seed)
            model, history = train_cnn(images, labels, config, description=f"{args.name} seed {config.seed}")
            save_model(model, out_dir / f"seed_{config.seed}.pt", name=args.name, seed=config.seed, counts=counts)
            write_json(out_dir / f"seed_{config.seed}.history.json", history)

    write_json(args.metrics, {**counts, "total": sum(counts.values()), "seeds": n_seeds})


if __name__ == "__main__":
    run_stage("train_model", main)
