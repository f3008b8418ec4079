"""DVC stage: the Markdown report, its CSV table and figures."""

import argparse
import json
from pathlib import Path

import pandas as pd

from shapnoise.evaluation import PAPER_SETS
from shapnoise.io import atomic_dir, read_npz
from shapnoise.report import (
    SET_DESCRIPTIONS,
    accuracy_matrix,
    check_findings,
    markdown_table,
    paper_comparison,
    plot_accuracy_bars,
    plot_adversarial_grid,
    plot_shap_noise_grid,
    spread_marks,
    summarise,
)
from shapnoise.stage import run_stage

GRID_SIZE = 8


def read_json(path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; run the stage that writes it (dvc repro)")
    return json.loads(path.read_text(encoding="utf-8"))


def noise_figure(filtered_path: str, shap_path: str, out: Path, title: str) -> None:
    """Plot the first kept noise images of a subset with their originals and SHAP maps."""
    kept = read_npz(filtered_path, required=("indices", "images", "originals", "labels", "predictions"))
    maps = read_npz(shap_path, required=("indices", "shap_values"))
    n = min(GRID_SIZE, len(kept["indices"]))
    position = {index: row for row, index in enumerate(maps["indices"].tolist())}
    rows = [position[index] for index in kept["indices"][:n].tolist()]
    plot_shap_noise_grid(kept["originals"][:n], maps["shap_values"][rows], kept["images"][:n],
                         kept["labels"][:n], kept["predictions"][:n], out, title)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-seed", default="data/evaluation/accuracy_per_seed.json", help="evaluate's per-seed output")
    parser.add_argument("--mixtures", default="metrics/mixtures", help="directory of per-model data counts")
    parser.add_argument("--filter", default="metrics/filter", help="directory of filter metrics (train.json, test.json)")
    parser.add_argument("--relabel", default="metrics/relabel", help="directory of relabelling metrics")
    parser.add_argument("--data", default="data", help="data directory with shap/, filtered/ and adversarial/")
    parser.add_argument("--out", default="reports", help="output directory: report.md, accuracy.csv, figures/")
    args = parser.parse_args()

    evaluation = read_json(args.per_seed)
    cells = summarise(evaluation["accuracy_percent"])
    models = sorted(m for m in cells if not m.startswith("generator_"))
    generators = sorted(m for m in cells if m.startswith("generator_"))
    corruption_sets = list(evaluation["corruptions"])
    comparison = paper_comparison(cells)
    findings = check_findings(cells, corruption_sets)
    data = Path(args.data)

    with atomic_dir(args.out) as out:
        figures = out / "figures"
        figures.mkdir()
        plot_accuracy_bars(comparison, figures / "accuracy_vs_paper.png")
        for subset in ("train", "test"):
            noise_figure(data / "filtered" / f"{subset}.npz", data / "shap" / f"{subset}.npz",
                         figures / f"shap_noise_{subset}.png", f"SHAP noise images that fooled the main generator ({subset})")
        test3 = read_npz(data / "adversarial" / "test3.npz", required=("images", "originals", "labels"))
        test4 = read_npz(data / "adversarial" / "test4.npz", required=("images",))
        n = min(GRID_SIZE, len(test3["labels"]), len(test4["images"]))
        plot_adversarial_grid(test3["originals"][:n], {"III": test3["images"][:n], "IV": test4["images"][:n]},
                              test3["labels"][:n], figures / "adversarial_test.png", "Adversarial test examples")
        comparison.to_csv(out / "accuracy.csv", index=False)

        lines = render(evaluation, cells, models, generators, corruption_sets, comparison, findings, args)
        (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def format_number(value: float, pattern: str) -> str:
    """Format a table value; NaN (no published value, or an empty set) becomes a dash."""
    return "–" if pd.isna(value) else pattern.format(value)


def render(evaluation, cells, models, generators, corruption_sets, comparison, findings, args) -> list[str]:
    """Return the report's Markdown lines."""
    sizes = evaluation["set_sizes"]
    seeds = max((cell.seeds for model in models for cell in cells[model].values()), default=0)
    lines = ["# shapnoise report", ""]
    lines += [f"Accuracy in percent, mean ± sample standard deviation over {seeds} seed(s) per model.", ""]
    lines += ["## Evaluation sets", ""]
    for set_name in PAPER_SETS:
        lines.append(f"- **{set_name}**: {SET_DESCRIPTIONS[set_name]} ({sizes.get(set_name, 0)} images)")
    lines.append("")

    lines += ["## Accuracy beside the paper's Table 2", ""]
    wide = comparison.pivot(index="model", columns="set", values=["accuracy", "paper", "difference"])
    table_rows = []
    for model in wide.index:
        row = {"model": model}
        for set_name in PAPER_SETS:
            cell = cells.get(model, {}).get(set_name)
            row[set_name] = cell.text() if cell else "n/a"
            row[f"{set_name} paper"] = format_number(wide.loc[model, ("paper", set_name)], "{:.2f}")
            row[f"{set_name} diff"] = format_number(wide.loc[model, ("difference", set_name)], "{:+.2f}")
        table_rows.append(row)
    lines += [markdown_table(pd.DataFrame(table_rows)), "", "![accuracy](figures/accuracy_vs_paper.png)", ""]

    lines += ["## The paper's findings on this run", ""]
    lines += ["A difference counts only when it exceeds the sum of the two standard deviations over seeds.", ""]
    for finding in findings:
        lines.append(f"- **{finding.claim}**: {finding.verdict()}. {finding.evidence}.")
    lines.append("")

    if corruption_sets:
        lines += ["## Random corruptions", ""]
        for name, info in evaluation["corruptions"].items():
            lines.append(f"- `{name}`: {info['kind']}, severity {info['severity']}")
        lines += ["", markdown_table(accuracy_matrix(cells, models + generators, corruption_sets)), ""]

    marks = spread_marks(cells, models, list(PAPER_SETS) + corruption_sets)
    if seeds > 1:
        lines += ["## Differences within the seed spread", ""]
        lines += [f"- {mark}" for mark in marks] if marks else ["None."]
        lines.append("")

    lines += ["## Generators", "", markdown_table(accuracy_matrix(cells, generators, list(PAPER_SETS))), ""]

    lines += ["## Training data per model", ""]
    count_rows = []
    for model in models:
        path = Path(args.mixtures) / f"{model}.json"
        if path.exists():
            count_rows.append({"model": model, **read_json(path)})
    if count_rows:
        lines += [markdown_table(pd.DataFrame(count_rows)), ""]

    lines += ["## SHAP noise filter and relabelling", ""]
    for subset in ("train", "test"):
        filter_path = Path(args.filter) / f"{subset}.json"
        relabel_path = Path(args.relabel) / f"{subset}.json"
        if filter_path.exists():
            counts = read_json(filter_path)
            lines.append(f"- {subset}: {counts['kept']} of {counts['total']} noise images fooled the main generator "
                         f"({100 * counts['rate']:.1f}%); generator accuracy on all noise images "
                         f"{100 * counts['generator_accuracy_on_noise']:.2f}%, on the originals "
                         f"{100 * counts['generator_accuracy_on_originals']:.2f}%")
        if relabel_path.exists():
            relabel = read_json(relabel_path)
            details = ", ".join(f"{key} {value}" for key, value in relabel.items())
            lines.append(f"- {subset} relabelling: {details}")
    lines += ["", "![SHAP noise, training](figures/shap_noise_train.png)", "",
              "![SHAP noise, test](figures/shap_noise_test.png)", "",
              "![adversarial examples](figures/adversarial_test.png)", ""]
    return lines


if __name__ == "__main__":
    run_stage("report", main)
