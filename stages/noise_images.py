"""DVC stage: SHAP noise images from the source images and their true-class SHAP maps."""

import argparse

import numpy as np

from shapnoise.io import read_npz, write_npz
from shapnoise.noise import ALGORITHMS, shap_noise
from shapnoise.params import load_section
from shapnoise.sources import split_images
from shapnoise.stage import StageError, run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", required=True, choices=["train", "test"],
                        help="which noise params to use: noise.train or noise.test")
    parser.add_argument("--source", required=True, help="split the SHAP maps were computed on")
    parser.add_argument("--shap", required=True, help="SHAP maps from the shap_maps stage (.npz)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--out", required=True, help="output .npz with indices, images, originals and labels")
    args = parser.parse_args()

    params = load_section("noise", args.params).section(args.subset)
    params.check_keys(["algorithm", "strength", "top_fraction"])
    algorithm = params.choice("algorithm", ALGORITHMS)
    strength = params.number("strength", minimum=0.0, maximum=1.0)
    top_fraction = params.number("top_fraction", minimum=0.0, maximum=1.0)

    maps = read_npz(args.shap, required=("indices", "labels", "shap_values"))
    indices, originals, labels = split_images(args.raw, args.splits, args.source)
    if not np.array_equal(maps["indices"], indices):
        raise StageError(
            f"{args.shap}: its indices do not match split {args.source} of {args.splits}; "
            "the SHAP maps are stale, rerun with dvc repro"
        )

    images = shap_noise(originals, maps["shap_values"], algorithm, strength, top_fraction)
    write_npz(args.out, indices=indices, images=images, originals=originals, labels=labels)


if __name__ == "__main__":
    run_stage("noise_images", main)
