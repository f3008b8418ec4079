"""Training mixtures: how many images each model takes from each training source.

The sources are the method's four training sets: ``clean`` (1, clean MNIST
images), ``shap_noise`` (2, relabelled SHAP noise images), ``adversarial_main``
(3, adversarial examples against the main generator) and ``adversarial_b``
(4, adversarial examples against generator b).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shapnoise.params import ParamsError, Section

SOURCES = ("clean", "shap_noise", "adversarial_main", "adversarial_b")
ALL = "all"
# Table 1 of the method uses as many adversarial examples as SHAP noise images.
MATCH_NOISE = "match_noise"


@dataclass
class SourceData:
    """Images and labels of one training source, with the MNIST index of each image."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def resolve_counts(mixture: Section, available: dict[str, int]) -> dict[str, int]:
    """Turn a mixture's entries (integer, ``all`` or ``match_noise``) into image counts.

    Raises ParamsError naming the model and the set when a count exceeds what
    exists, or when a set the mixture requests is empty.
    """
    mixture.check_keys(SOURCES)
    model = mixture.path.rsplit(".", 1)[-1]
    counts = {}
    for source in SOURCES:
        value = mixture.raw(source)
        if value == ALL:
            count = available[source]
            if count == 0:
                raise ParamsError(
                    f"{mixture.source}: {mixture.key_path(source)} = all, but the {source} set is empty, "
                    f"so model {model} would train without it. Check the stage that produces {source} "
                    "(for shap_noise: did any image pass the filter, or did labelstudio.fallback = drop "
                    "leave out every image without a human label?) or set the count to 0."
                )
        elif value == MATCH_NOISE:
            if source not in ("adversarial_main", "adversarial_b"):
                raise mixture.fail(source, value, "an integer >= 0 or 'all' (match_noise is for the adversarial sets)")
            count = available["shap_noise"]
            if count == 0:
                raise ParamsError(
                    f"{mixture.source}: {mixture.key_path(source)} = match_noise, but the shap_noise set is empty, "
                    f"so model {model} would get no {source} images. Check that images passed the filter and "
                    "that labelstudio.fallback is not drop while no image has a human label, or give an integer count."
                )
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            count = value
        else:
            raise mixture.fail(source, value, "an integer >= 0, 'all' or (adversarial sets) 'match_noise'")
        if count > available[source]:
            raise ParamsError(
                f"{mixture.source}: model {model} needs {count} {source} images "
                f"({mixture.key_path(source)} = {value!r}) but only {available[source]} exist; "
                "lower the count or enlarge the source split in split.sizes"
            )
        counts[source] = count
    if sum(counts.values()) == 0:
        raise ParamsError(f"{mixture.source}: {mixture.path} selects no training images at all")
    return counts


def assemble(sources: dict[str, SourceData], counts: dict[str, int], seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Concatenate ``counts[name]`` seeded random images of each source; return images, labels and provenance.

    The provenance maps each source to the MNIST indices it contributed, so that
    tests and reports can check that no evaluation image leaked into training.
    """
    rng = np.random.default_rng(seed)
    images, labels, provenance = [], [], {}
    for name in SOURCES:
        count = counts.get(name, 0)
        data = sources[name]
        chosen = np.sort(rng.permutation(len(data.labels))[:count])
        images.append(data.images[chosen])
        labels.append(data.labels[chosen])
        provenance[name] = data.indices[chosen]
    return np.concatenate(images), np.concatenate(labels), provenance
