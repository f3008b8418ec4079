"""DVC stage: Label Studio tasks, PNG images and the labelling config for the kept noise images of one split."""

import argparse

from shapnoise.labelling import SPLITS, read_filtered, write_export
from shapnoise.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", required=True, choices=SPLITS, help="which split's images to export (required)")
    parser.add_argument("--filtered", required=True, help="input .npz of the filter stage (required)")
    parser.add_argument("--out", required=True,
                        help="output folder for tasks.json, config.xml and images/ (required; replaced as a whole)")
    parser.add_argument("--scale", type=int, default=8,
                        help="enlargement of the 28x28 images in the PNGs, in whole pixels (default: 8, "
                             "so 224x224)")
    parser.add_argument("--model-version", default="generator-main",
                        help="model_version of the pre-annotations in Label Studio (default: generator-main)")
    args = parser.parse_args()
    if not 1 <= args.scale <= 32:
        raise ValueError(f"--scale {args.scale} is invalid: expected an integer from 1 to 32")

    filtered = read_filtered(args.filtered)
    write_export(filtered, args.split, args.out, args.scale, args.model_version)


if __name__ == "__main__":
    run_stage("labelstudio_export", main)
