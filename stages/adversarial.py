"""DVC stage: adversarial examples against one generator, for training (3, 4) or evaluation (III, IV)."""

import argparse

from shapnoise.attacks import ATTACKS, generate_adversarial
from shapnoise.io import write_json, write_npz
from shapnoise.models import load_model, predict
from shapnoise.params import load_section
from shapnoise.sources import split_images
from shapnoise.stage import run_stage

PROTOCOLS = ("clean", "literal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="name of the set (train3, train4, test3, test4)")
    parser.add_argument("--source", required=True, help="split whose images are attacked")
    parser.add_argument("--literal-source", default=None,
                        help="split attacked instead when adversarial.test3_protocol is 'literal'; dvc.yaml gives test3 the "
                             "adversarial_source split and every other set its own source")
    parser.add_argument("--model", required=True, help="weights of the generator under attack (.pt)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--raw", default="data/raw", help="directory of the MNIST files (default: data/raw)")
    parser.add_argument("--splits", default="data/splits/splits.npz", help="splits file")
    parser.add_argument("--out", required=True, help="output .npz with indices, images, originals and labels")
    parser.add_argument("--metrics", required=True, help="output JSON with the attack's success against its generator")
    args = parser.parse_args()

    params = load_section("adversarial", args.params)
    params.check_keys(["attack", "epsilon", "pgd_steps", "pgd_step_size", "test3_protocol", "seed"])
    attack = params.choice("attack", ATTACKS)
    epsilon = params.number("epsilon", minimum=0.0, maximum=1.0)
    steps = params.integer("pgd_steps", minimum=1)
    step_size = params.number("pgd_step_size", minimum=0.0, maximum=1.0)
    protocol = params.choice("test3_protocol", PROTOCOLS)
    seed = params.integer("seed", minimum=0)

    # The literal reading of the method evaluates III on the training examples 3 themselves.
    source = args.literal_source if (args.literal_source and protocol == "literal") else args.source
    indices, originals, labels = split_images(args.raw, args.splits, source)
    model = load_model(args.model)
    images = generate_adversarial(model, originals, labels, attack, epsilon, steps, step_size, seed)

    write_npz(args.out, indices=indices, images=images, originals=originals, labels=labels,
              subset=("test" if source == "test" else "train"))
    accuracy_after = float((predict(model, images) == labels).mean()) if len(labels) else 0.0
    accuracy_before = float((predict(model, originals) == labels).mean()) if len(labels) else 0.0
    write_json(args.metrics, {
        "images": int(len(labels)),
        "generator_accuracy_clean": round(accuracy_before, 6),
        "generator_accuracy_adversarial": round(accuracy_after, 6),
    })


if __name__ == "__main__":
    run_stage("adversarial", main)
