"""The run's accuracy table beside the published one, the findings check, and image grids.

"The paper" here is the Japanese conference paper whose method this pipeline
reproduces (SHAP noise images for robust digit classifiers). It reports one
run per model, in its Table 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # Stages run without a display.
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from shapnoise.evaluation import PAPER_SETS, mean_and_std, within_spread  # noqa: E402

# Table 2 of the method's paper: accuracy (%) of models 0 to 4 on sets I to IV, one run each.
PAPER_TABLE2 = {
    "model_0": {"I": 96.70, "II": 54.02, "III": 69.61, "IV": 72.57},
    "model_1": {"I": 97.02, "II": 70.26, "III": 98.09, "IV": 85.93},
    "model_2": {"I": 97.20, "II": 87.42, "III": 97.87, "IV": 90.07},
    "model_3": {"I": 97.35, "II": 87.42, "III": 87.24, "IV": 91.91},
    "model_4": {"I": 93.85, "II": 85.57, "III": 97.92, "IV": 87.31},
}

SET_DESCRIPTIONS = {
    "I": "MNIST test images",
    "II": "SHAP noise test images (filtered, relabelled)",
    "III": "adversarial examples against the main generator",
    "IV": "adversarial examples against generator c",
}


@dataclass
class Cell:
    """Mean and sample standard deviation of one model's accuracy (%) on one set, over seeds."""

    mean: float
    std: float
    seeds: int

    def text(self) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.2f} ± {self.std:.2f}" if self.seeds > 1 else f"{self.mean:.2f}"


def summarise(per_seed: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Cell]]:
    """Turn per-seed accuracies into mean and spread cells, by model and set."""
    cells = {}
    for model, sets in per_seed.items():
        cells[model] = {}
        for set_name, values in sets.items():
            clean = [v for v in values if v is not None and not math.isnan(v)]
            mean, std = mean_and_std(clean)
            cells[model][set_name] = Cell(mean, std, len(clean))
    return cells


def paper_comparison(cells: dict[str, dict[str, Cell]]) -> pd.DataFrame:
    """Build one row per model and set: this run's mean and spread, the published value and the difference."""
    rows = []
    # The five published models first, then any further mixture of this run (no published value).
    extra = sorted(m for m in cells if m not in PAPER_TABLE2 and not m.startswith("generator_"))
    for model in [*PAPER_TABLE2, *extra]:
        published = PAPER_TABLE2.get(model, {s: math.nan for s in PAPER_SETS})
        for set_name in PAPER_SETS:
            cell = cells.get(model, {}).get(set_name)
            mean = cell.mean if cell else math.nan
            rows.append({
                "model": model,
                "set": set_name,
                "accuracy": round(mean, 2),
                "std": round(cell.std, 2) if cell else math.nan,
                "seeds": cell.seeds if cell else 0,
                "paper": published[set_name],
                "difference": round(mean - published[set_name], 2),
            })
    return pd.DataFrame(rows)


@dataclass
class Finding:
    """One of the method's claims, checked on this run's numbers."""

    claim: str
    holds: bool | None
    evidence: str

    def verdict(self) -> str:
        if self.holds is None:
            return "not testable (missing models or sets)"
        return "holds" if self.holds else "does not hold"


def _compare(cells, model_a, model_b, set_name) -> tuple[float, bool] | None:
    """Return (mean_a - mean_b, within spread) or None when either value is missing."""
    try:
        a, b = cells[model_a][set_name], cells[model_b][set_name]
    except KeyError:
        return None
    if math.isnan(a.mean) or math.isnan(b.mean):
        return None
    return a.mean - b.mean, within_spread(a.mean, a.std, b.mean, b.std)


def _difference_check(cells, model_a, model_b, set_name, allow_within_spread: bool) -> tuple[bool | None, str]:
    """Tell whether model_a beats model_b on a set, with the evidence text; None when a value is missing.

    By default model_a must be higher by more than the seed spread. With
    ``allow_within_spread`` a difference within the spread also passes, which
    checks that model_a "does not lose" to model_b.
    """
    result = _compare(cells, model_a, model_b, set_name)
    if result is None:
        return None, f"{model_a} vs {model_b} on {set_name}: missing"
    difference, close = result
    note = " (within the seed spread)" if close else ""
    passes = (difference >= 0 or close) if allow_within_spread else (difference > 0 and not close)
    return passes, f"{model_a} − {model_b} on {set_name}: {difference:+.2f} points{note}"


def _higher(cells, model_a, model_b, set_name) -> tuple[bool | None, str]:
    return _difference_check(cells, model_a, model_b, set_name, allow_within_spread=False)


def _not_lower(cells, model_a, model_b, set_name) -> tuple[bool | None, str]:
    return _difference_check(cells, model_a, model_b, set_name, allow_within_spread=True)


def _all(results: list[tuple[bool | None, str]]) -> tuple[bool | None, str]:
    verdicts = [holds for holds, _ in results]
    evidence = "; ".join(text for _, text in results)
    if any(v is None for v in verdicts):
        return None, evidence
    return all(verdicts), evidence


def check_findings(cells: dict[str, dict[str, Cell]], corruption_sets: list[str]) -> list[Finding]:
    """Check the method's qualitative findings and its motivating claim on this run.

    A difference counts only when it exceeds the sum of the two models' standard
    deviations over seeds (see ``within_spread``). With one seed, every nonzero
    difference counts.
    """
    findings = []
    # Model 1 (adversarial training) is high on III but low on II: clearly above model 0 on III,
    # and lower on II than on III.
    high_iii = _higher(cells, "model_1", "model_0", "III")
    try:
        ii_gap = cells["model_1"]["III"].mean - cells["model_1"]["II"].mean
    except KeyError:
        ii_gap = math.nan
    low_ii = (None, "model_1 II or III missing") if math.isnan(ii_gap) else (
        ii_gap > 0, f"model_1 III − II: {ii_gap:+.2f} points")
    holds, evidence = _all([high_iii, low_ii])
    findings.append(Finding("Adversarial training (model 1) is high on III but low on II", holds, evidence))

    holds, evidence = _all([
        _higher(cells, "model_2", "model_1", "II"),
        _higher(cells, "model_3", "model_1", "II"),
        _not_lower(cells, "model_2", "model_1", "III"),
    ])
    findings.append(Finding(
        "Adding SHAP noise images (models 2 and 3) raises II above model 1 without losing III (model 2 vs model 1)",
        holds, evidence))

    holds, evidence = _all([_higher(cells, other, "model_4", "I") for other in ("model_0", "model_1", "model_2", "model_3")])
    findings.append(Finding("Dropping the clean images (model 4) lowers accuracy on I", holds, evidence))

    if corruption_sets:
        def corruption_mean(model: str) -> Cell | None:
            if model not in cells:
                return None
            values = [cells[model][name] for name in corruption_sets if name in cells[model]]
            means = [c.mean for c in values if not math.isnan(c.mean)]
            if not means:
                return None
            # The spread of an average of sets: the mean of their spreads, a conservative rough figure.
            return Cell(float(np.mean(means)), float(np.mean([c.std for c in values])), min(c.seeds for c in values))

        averaged = {m: {"corruptions": c} for m in cells if (c := corruption_mean(m)) is not None}
        holds, evidence = _all([
            _higher(averaged, "model_2", "model_1", "corruptions"),
            _higher(averaged, "model_3", "model_1", "corruptions"),
        ])
        findings.append(Finding(
            "Motivation: on random corruptions, adversarial training (model 1) is worse than SHAP noise "
            "training (models 2 and 3), averaged over all corruption sets", holds, evidence))
        holds, evidence = _all([_higher(averaged, "model_0", "model_1", "corruptions")])
        findings.append(Finding(
            "Motivation: adversarial training (model 1) loses accuracy on random corruptions compared with "
            "the plain CNN (model 0)", holds, evidence))
    return findings


def _shap_limit(shap_values: np.ndarray) -> float:
    """Return a symmetric colour limit for SHAP maps: the 99.9th percentile of |value|."""
    limit = float(np.percentile(np.abs(shap_values), 99.9)) if shap_values.size else 0.0
    return limit if limit > 0 else 1.0


def plot_shap_noise_grid(
    originals: np.ndarray,
    shap_values: np.ndarray,
    noise_images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    path,
    title: str,
) -> None:
    """Draw columns of examples: the original, its true-class SHAP map, the noise image and the prediction.

    The SHAP map follows SHAP's image plots: the digit in grey underneath, red
    where a pixel supports the class, blue where it counts against it, on a
    colour scale symmetric around zero.
    """
    n = len(originals)
    figure, axes = plt.subplots(3, max(n, 1), figsize=(1.6 * max(n, 1), 5.4), squeeze=False)
    limit = _shap_limit(shap_values)
    for column in range(n):
        axes[0, column].imshow(originals[column], cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(f"label {labels[column]}", fontsize=9)
        axes[1, column].imshow(originals[column], cmap="gray_r", vmin=0, vmax=1, alpha=0.25)
        axes[1, column].imshow(shap_values[column], cmap="bwr", vmin=-limit, vmax=limit, alpha=0.9)
        axes[2, column].imshow(noise_images[column], cmap="gray", vmin=0, vmax=1)
        axes[2, column].set_title(f"predicted {predictions[column]}", fontsize=9)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    for row, name in enumerate(("original", "SHAP (true class)", "SHAP noise")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_adversarial_grid(originals: np.ndarray, adversarial: dict[str, np.ndarray], labels: np.ndarray, path, title: str) -> None:
    """Draw the same source images above their adversarial versions, one row per set."""
    n = len(originals)
    rows = 1 + len(adversarial)
    figure, axes = plt.subplots(rows, max(n, 1), figsize=(1.6 * max(n, 1), 1.8 * rows), squeeze=False)
    for column in range(n):
        axes[0, column].imshow(originals[column], cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(f"label {labels[column]}", fontsize=9)
        for row, images in enumerate(adversarial.values(), start=1):
            axes[row, column].imshow(images[column], cmap="gray", vmin=0, vmax=1)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel("original", fontsize=9)
    for row, name in enumerate(adversarial, start=1):
        axes[row, 0].set_ylabel(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_accuracy_bars(table: pd.DataFrame, path) -> None:
    """Draw this run's accuracy (with its seed spread) beside the published Table 2, one panel per evaluation set."""
    figure, axes = plt.subplots(1, len(PAPER_SETS), figsize=(4 * len(PAPER_SETS), 3.4), sharey=True)
    for axis, set_name in zip(axes, PAPER_SETS):
        rows = table[table["set"] == set_name]
        positions = np.arange(len(rows))
        axis.bar(positions - 0.2, rows["accuracy"], width=0.4, yerr=rows["std"].fillna(0), label="this run")
        axis.bar(positions + 0.2, rows["paper"], width=0.4, label="paper")
        axis.set_xticks(positions, [m.replace("model_", "") for m in rows["model"]])
        axis.set_xlabel("model")
        axis.set_title(f"{set_name}: {SET_DESCRIPTIONS[set_name]}", fontsize=9)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].set_ylim(0, 100)
    # One legend above the panels, where it cannot cover a bar.
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(path, dpi=100)
    plt.close(figure)


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a DataFrame as a GitHub Markdown table without extra dependencies."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join("" if (isinstance(v, float) and math.isnan(v)) else str(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def accuracy_matrix(cells: dict[str, dict[str, Cell]], models: list[str], sets: list[str]) -> pd.DataFrame:
    """Build a models-by-sets table of "mean ± std" texts."""
    rows = []
    for model in models:
        row = {"model": model}
        for set_name in sets:
            cell = cells.get(model, {}).get(set_name)
            row[set_name] = cell.text() if cell else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def spread_marks(cells: dict[str, dict[str, Cell]], models: list[str], sets: list[str]) -> list[str]:
    """List every pair of models whose difference on a set is within the seed spread."""
    marks = []
    for set_name in sets:
        for i, model_a in enumerate(models):
            for model_b in models[i + 1:]:
                result = _compare(cells, model_a, model_b, set_name)
                if result is not None and result[1]:
                    marks.append(f"{set_name}: {model_a} vs {model_b} ({result[0]:+.2f} points)")
    return marks
