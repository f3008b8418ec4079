"""DVC stage: fetch and verify the four MNIST files into data/raw/."""

import argparse
import os

from shapnoise.data import MIRROR_ENV, PUBLIC_MIRRORS_ENV, download_mnist, public_mirrors_from_env
from shapnoise.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="data/raw", help="output directory (default: data/raw)")
    args = parser.parse_args()
    download_mnist(
        args.out,
        mirror=os.environ.get(MIRROR_ENV) or None,
        public_mirrors=public_mirrors_from_env(os.environ.get(PUBLIC_MIRRORS_ENV)),
    )


if __name__ == "__main__":
    run_stage("download", main)
