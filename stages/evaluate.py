"""DVC stage: accuracy of every model and generator on the evaluation sets I to IV and the corruptions."""

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shapnoise.corruptions import CORRUPTIONS, corrupt
from shapnoise.evaluation import PAPER_SETS, mean_and_std, rounded_or_none
from shapnoise.io import atomic_dir, read_npz, write_json
from shapnoise.models import load_model, predict
from shapnoise.params import load_section
from shapnoise.sources import split_images
from shapnoise.stage import StageError, run_stage


def corruption_settings(params) -> tuple[int, dict]:
    """Validate evaluate.seed and evaluate.corruptions; return the seed and {set name: kind and severity}."""
    seed = params.integer("seed", minimum=0)
    corruption_params = params.section("corruptions")
    corruption_params.check_keys(CORRUPTIONS)
    settings = {}
    for kind in CORRUPTIONS:
        levels = corruption_params.raw(kind)
        valid = isinstance(levels, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in levels)
        if not valid:
            raise corruption_params.fail(kind, levels, "a list of severities >= 0 (may be empty)")
        for level_number, severity in enumerate(levels, start=1):
            settings[f"{kind}_{level_number}"] = {"kind": kind, "severity": float(severity)}
    return seed, settings


def evaluation_sets(args, seed: int, corruptions: dict) -> dict:
    """Return the evaluation sets as {name: (images, labels)}: I to IV, then one set per corruption level."""
    _, test_images, test_labels = split_images(args.raw, args.splits, "test")
    sets = {"I": (test_images, test_labels)}
    for name, path in (("II", args.shap_noise), ("III", args.adversarial_main), ("IV", args.adversarial_c)):
        arrays = read_npz(path, required=("images", "labels"))
        sets[name] = (arrays["images"], arrays["labels"])
    for offset, (name, setting) in enumerate(corruptions.items(), start=1):
        # Each level gets its own noise draws, seeded from evaluate.seed.
        sets[name] = (corrupt(test_images, setting["kind"], setting["severity"], seed + offset), test_labels)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--models", default="models/mixtures", help="directory with one folder of seed_<n>.pt per model")
    parser.add_argument("--generators", default="models/generators", help="directory of the generator weights")
    parser.add_argument("--shap-noise", required=True, help="relabelled SHAP noise test images, set II (.npz)")
    parser.add_argument("--adversarial-main", required=True, help="adversarial test examples, set III (.npz)")
    parser.add_argument("--adversarial-c", required=True, help="adversarial test examples, set IV (.npz)")
    parser.add_argument("--metrics", default="metrics/accuracy.json", help="output: mean accuracy in percent")
    parser.add_argument("--per-seed", default="data/evaluation/accuracy_per_seed.json",
                        help="output: accuracy of every seed, the set sizes and corruption severities")
    parser.add_argument("--confusion", default="plots/confusion", help="output directory of confusion CSVs")
    args = parser.parse_args()

    params = load_section("evaluate", args.params)
    params.check_keys(["seed", "corruptions"])
    seed, severities = corruption_settings(params)
    sets = evaluation_sets(args, seed, severities)

    # The models are the mixtures in params, not every folder on disk: a mixture
    # removed from params leaves its old folder behind, and it must not be reported.
    mixtures = load_section("train_model", args.params).section("mixtures")
    model_files = {}
    for name in mixtures.values:
        files = sorted((Path(args.models) / name).glob("seed_*.pt"))
        if not files:
            raise StageError(f"{Path(args.models) / name}: no trained models (seed_<n>.pt) for mixture {name}; "
                             f"run dvc repro train_model@{name}")
        model_files[name] = files
    for generator in ("main", "b", "c"):
        model_files[f"generator_{generator}"] = [Path(args.generators) / f"{generator}.pt"]

    per_seed, means = {}, {}
    with atomic_dir(args.confusion) as confusion_dir:
        for name, files in tqdm(model_files.items(), desc="evaluate", unit="model"):
            per_seed[name] = {set_name: [] for set_name in sets}
            for file_number, path in enumerate(files):
                model = load_model(path)
                for set_name, (images, labels) in sets.items():
                    predictions = predict(model, images)
                    per_seed[name][set_name].append(float((predictions == labels).mean()) * 100 if len(labels) else float("nan"))
                    if file_number == 0 and set_name in PAPER_SETS and not name.startswith("generator_"):
                        write_confusion(confusion_dir / f"{name}_{set_name}.csv", labels, predictions)
            means[name] = {s: rounded_or_none(mean_and_std(v)[0]) for s, v in per_seed[name].items()}

    write_json(args.metrics, means)
    write_json(args.per_seed, {
        "accuracy_percent": per_seed,
        "set_sizes": {name: int(len(labels)) for name, (_, labels) in sets.items()},
        "corruptions": severities,
    })


def write_confusion(path: Path, labels: np.ndarray, predictions: np.ndarray) -> None:
    """Write one row per image (actual, predicted), the layout of DVC's confusion template."""
    lines = ["actual,predicted"] + [f"{a},{p}" for a, p in zip(labels.tolist(), predictions.tolist())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    run_stage("evaluate", main)
