"""DVC stage: the relabelled noise images of one split, from the Label Studio exports under labels/."""

import argparse

from shapnoise.io import write_json, write_npz
from shapnoise.labelling import (
    FALLBACK_POLICIES,
    PARAM_KEYS,
    SPLITS,
    read_exports,
    read_filtered,
    relabel,
    source_id,
)
from shapnoise.params import load_section
from shapnoise.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", required=True, choices=SPLITS, help="which split to relabel (required)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--filtered", required=True, help="input .npz of the filter stage (required)")
    parser.add_argument("--labels", required=True,
                        help="folder of Label Studio JSON exports for this split, may be empty (required)")
    parser.add_argument("--out", required=True, help="output .npz of the relabelled images (required)")
    parser.add_argument("--metrics", required=True, help="output JSON of the relabelling counts (required)")
    args = parser.parse_args()

    params = load_section("labelstudio", args.params)
    params.check_keys(PARAM_KEYS)
    fallback = params.choice("fallback", FALLBACK_POLICIES)

    filtered = read_filtered(args.filtered)
    kept = [source_id(args.split, index) for index in filtered["indices"]]
    summary = read_exports(args.labels, args.split, kept)
    arrays, metrics = relabel(filtered, args.split, summary, fallback)

    write_npz(args.out, **arrays)
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage("labelstudio_import", main)
