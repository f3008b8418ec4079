"""DVC stage: draw disjoint index sets from the MNIST training images, and the test subset."""

import argparse

from shapnoise.data import N_TEST, SPLIT_NAMES, draw_test_subset, make_splits
from shapnoise.io import write_json, write_npz
from shapnoise.params import load_section
from shapnoise.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--out", default="data/splits/splits.npz", help="output .npz of index arrays")
    parser.add_argument("--summary", default="data/splits/sizes.json", help="output JSON of split sizes")
    args = parser.parse_args()

    params = load_section("split", args.params)
    params.check_keys(["seed", "test_size", "sizes"])
    seed = params.integer("seed", minimum=0)
    test_size = params.integer("test_size", minimum=1, maximum=N_TEST)
    size_params = params.section("sizes")
    size_params.check_keys(SPLIT_NAMES)
    sizes = {name: size_params.integer(name, minimum=1) for name in SPLIT_NAMES}

    splits = make_splits(sizes, seed)
    splits["test"] = draw_test_subset(test_size, seed)
    write_npz(args.out, **splits)
    write_json(args.summary, {name: int(len(indices)) for name, indices in splits.items()})


if __name__ == "__main__":
    run_stage("split", main)
