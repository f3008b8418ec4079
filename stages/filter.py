"""DVC stage: keep the SHAP noise images that the main generator misclassifies."""

import argparse

from shapnoise.io import read_npz, write_json, write_npz
from shapnoise.models import load_model, predict
from shapnoise.noise import filter_counts, misclassified
from shapnoise.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noise", required=True, help="noise images from the noise_images stage (.npz)")
    parser.add_argument("--model", required=True, help="main generator weights (.pt)")
    parser.add_argument("--out", required=True, help="output .npz of the kept images")
    parser.add_argument("--metrics", required=True, help="output JSON with kept counts and rates")
    args = parser.parse_args()

    noise = read_npz(args.noise, required=("indices", "images", "originals", "labels"))
    model = load_model(args.model)
    predictions = predict(model, noise["images"])
    original_predictions = predict(model, noise["originals"])
    keep = misclassified(predictions, noise["labels"])

    write_npz(
        args.out,
        indices=noise["indices"][keep],
        images=noise["images"][keep],
        originals=noise["originals"][keep],
        labels=noise["labels"][keep],
        predictions=predictions[keep],
    )
    counts = filter_counts(noise["labels"], keep)
    total = max(len(keep), 1)
    counts["generator_accuracy_on_originals"] = round(float((original_predictions == noise["labels"]).sum()) / total, 6)
    counts["generator_accuracy_on_noise"] = round(float((~keep).sum()) / total, 6)
    # Zero by construction: every kept image is one the generator gets wrong.
    counts["generator_accuracy_on_kept"] = round(float((predictions[keep] == noise["labels"][keep]).mean()), 6) if keep.any() else 0.0
    write_json(args.metrics, counts)


if __name__ == "__main__":
    run_stage("filter", main)
