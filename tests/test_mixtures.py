import numpy as np
import pytest

from shapnoise.mixtures import SOURCES, SourceData, assemble, resolve_counts
from shapnoise.params import ParamsError, Section


def source(n: int, label: int, offset: int) -> SourceData:
    return SourceData(
        images=np.full((n, 28, 28), label / 10, dtype=np.float32),
        labels=np.full(n, label, dtype=np.int64),
        indices=np.arange(offset, offset + n, dtype=np.int64),
    )


SOURCES_DATA = {
    "clean": source(50, 0, 0),
    "shap_noise": source(12, 1, 1000),
    "adversarial_main": source(20, 2, 2000),
    "adversarial_b": source(20, 3, 3000),
}
AVAILABLE = {name: len(data.labels) for name, data in SOURCES_DATA.items()}


def mixture(name="model_2", **entries) -> Section:
    values = {source: 0 for source in SOURCES}
    values.update(entries)
    return Section(values, f"train_model.mixtures.{name}")


def test_counts_follow_table_one_rules():
    counts = resolve_counts(mixture(clean="all", shap_noise="all", adversarial_main="match_noise"), AVAILABLE)
    assert counts == {"clean": 50, "shap_noise": 12, "adversarial_main": 12, "adversarial_b": 0}


def test_assemble_counts_labels_and_provenance():
    counts = {"clean": 30, "shap_noise": 12, "adversarial_main": 12, "adversarial_b": 5}
    images, labels, provenance = assemble(SOURCES_DATA, counts, seed=0)
    assert len(images) == 59
    assert np.bincount(labels, minlength=4).tolist() == [30, 12, 12, 5]
    # Each image keeps its label: source k contains images of value k / 10 labelled k.
    assert np.allclose(images[:, 0, 0], labels / 10)
    assert len(provenance["clean"]) == 30
    assert set(provenance["adversarial_b"]) <= set(range(3000, 3020))
    assert len(np.unique(provenance["clean"])) == 30


def test_assemble_seeded_subset():
    counts = {"clean": 10, "shap_noise": 0, "adversarial_main": 0, "adversarial_b": 0}
    first = assemble(SOURCES_DATA, counts, seed=1)[2]["clean"]
    second = assemble(SOURCES_DATA, counts, seed=1)[2]["clean"]
    other = assemble(SOURCES_DATA, counts, seed=2)[2]["clean"]
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_empty_noise_set_names_model_and_set():
    available = {**AVAILABLE, "shap_noise": 0}
    with pytest.raises(ParamsError) as error:
        resolve_counts(mixture("model_4", shap_noise="all"), available)
    assert "model_4" in str(error.value)
    assert "shap_noise" in str(error.value)


def test_match_noise_with_empty_noise_set():
    available = {**AVAILABLE, "shap_noise": 0}
    with pytest.raises(ParamsError, match="model_1.*adversarial_main|adversarial_main.*model_1"):
        resolve_counts(mixture("model_1", clean="all", adversarial_main="match_noise"), available)


def test_count_larger_than_source():
    with pytest.raises(ParamsError) as error:
        resolve_counts(mixture("model_0", clean=51), AVAILABLE)
    assert "model_0" in str(error.value)
    assert "51" in str(error.value)
    assert "50" in str(error.value)


@pytest.mark.parametrize("value", [-1, "most", 2.5, True])
def test_invalid_entry(value):
    with pytest.raises(ParamsError, match="train_model.mixtures.model_2.clean"):
        resolve_counts(mixture(clean=value), AVAILABLE)


def test_unknown_source_key():
    values = {source: 0 for source in SOURCES}
    values["fgsm"] = 5
    with pytest.raises(ParamsError, match="fgsm"):
        resolve_counts(Section(values, "train_model.mixtures.model_9"), AVAILABLE)


def test_all_zero_mixture():
    with pytest.raises(ParamsError, match="no training images"):
        resolve_counts(mixture(), AVAILABLE)
