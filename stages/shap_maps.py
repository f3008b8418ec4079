"""DVC stage: SHAP values of the main generator for the true class of every source image."""

import argparse

from shapnoise.explain import select_background, true_class_shap_values
from shapnoise.io import write_npz
from shapnoise.models import load_model
from shapnoise.params import load_section
from shapnoise.sources import split_images
from shapnoise.stage import run_stage

EXPLAINERS = ("deep", "gradient")
IMPLEMENTATIONS = ("fast", "shap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="split whose images are explained (noise_source or test)")
    parser.add_argument("--background-split", default="generator",
                        help="split the background is drawn from (default: generator, the model's training data)")
    parser.add_argument("--model", required=True, help="generator weights (.pt)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--out", required=True, help="output .npz with indices, labels and shap_values")
    args = parser.parse_args()

    params = load_section("shap", args.params)
    params.check_keys(["explainer", "implementation", "background_size", "batch_size", "seed"])
    explainer = params.choice("explainer", EXPLAINERS)
    implementation = params.choice("implementation", IMPLEMENTATIONS)
    background_size = params.integer("background_size", minimum=1)
    batch_size = params.integer("batch_size", minimum=1)
    seed = params.integer("seed", minimum=0)

    model = load_model(args.model)
    _, background_pool, _ = split_images(args.raw, args.splits, args.background_split)
    if background_size > len(background_pool):
        raise ValueError(
            f"shap.background_size = {background_size} is larger than the {len(background_pool)} images of "
            f"split {args.background_split}; lower shap.background_size"
        )
    background = select_background(background_pool, background_size, seed)

    indices, images, labels = split_images(args.raw, args.splits, args.source)
    shap_values = true_class_shap_values(
        model, images, labels, background,
        explainer=explainer, implementation=implementation, batch_size=batch_size, seed=seed,
    )
    write_npz(args.out, indices=indices, labels=labels, shap_values=shap_values.astype("float32"))


if __name__ == "__main__":
    run_stage("shap_maps", main)
