import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from shapnoise.data import (
    MIRROR_ENV,
    MNIST_FILES,
    DownloadError,
    download_mnist,
    draw_test_subset,
    load_mnist,
    make_splits,
    read_idx,
)
from tests.conftest import mnist_mirror


def read_uncompressed(mirror: Path, name: str) -> bytes:
    gz = mirror / f"{name}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.exists() else (mirror / name).read_bytes()


@pytest.fixture(scope="module")
def originals() -> dict[str, bytes]:
    mirror = mnist_mirror()
    return {f.name: read_uncompressed(mirror, f.name) for f in MNIST_FILES}


def make_mirror(directory: Path, originals: dict[str, bytes], compress: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in originals.items():
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(content, compresslevel=1))
        else:
            (directory / name).write_bytes(content)
    return directory


@pytest.mark.parametrize("compress", [True, False])
def test_download_from_local_mirror(tmp_path, originals, compress):
    mirror = make_mirror(tmp_path / "mirror", originals, compress)
    raw = tmp_path / "raw"
    download_mnist(raw, mirror=str(mirror), public_mirrors=())
    for expected in MNIST_FILES:
        content = (raw / expected.name).read_bytes()
        assert hashlib.md5(content).hexdigest() == expected.md5
    assert sorted(p.name for p in raw.iterdir()) == sorted(f.name for f in MNIST_FILES)


def test_download_accepts_file_url(tmp_path, originals):
    mirror = make_mirror(tmp_path / "mirror", originals, compress=True)
    download_mnist(tmp_path / "raw", mirror=mirror.as_uri(), public_mirrors=())
    assert (tmp_path / "raw" / "t10k-labels-idx1-ubyte").exists()


def test_download_corrupted_file_names_file_and_variable(tmp_path, originals):
    mirror = make_mirror(tmp_path / "mirror", originals, compress=False)
    damaged = bytearray(originals["t10k-labels-idx1-ubyte"])
    damaged[100] ^= 0xFF
    (mirror / "t10k-labels-idx1-ubyte").write_bytes(bytes(damaged))
    with pytest.raises(DownloadError) as error:
        download_mnist(tmp_path / "raw", mirror=str(mirror), public_mirrors=())
    assert "t10k-labels-idx1-ubyte" in str(error.value)
    assert "MD5" in str(error.value)
    assert MIRROR_ENV in str(error.value)
    assert not (tmp_path / "raw").exists()


def test_download_truncated_gzip(tmp_path, originals):
    mirror = make_mirror(tmp_path / "mirror", originals, compress=True)
    gz = mirror / "train-labels-idx1-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-200])
    with pytest.raises(DownloadError) as error:
        download_mnist(tmp_path / "raw", mirror=str(mirror), public_mirrors=())
    assert "train-labels-idx1-ubyte.gz" in str(error.value)
    assert "truncated" in str(error.value)


def test_download_missing_file_tries_every_source(tmp_path, originals):
    mirror = make_mirror(tmp_path / "mirror", originals, compress=True)
    (mirror / "t10k-images-idx3-ubyte.gz").unlink()
    # A port on the loopback interface with nothing listening: refused at once.
    unreachable = "http://127.0.0.1:9/mnist/"
    with pytest.raises(DownloadError) as error:
        download_mnist(tmp_path / "raw", mirror=str(mirror), public_mirrors=(unreachable,), timeout=5)
    message = str(error.value)
    assert "t10k-images-idx3-ubyte" in message
    assert str(mirror) in message
    assert "127.0.0.1:9" in message
    assert MIRROR_ENV in message


def test_failed_download_keeps_previous_output(tmp_path, originals):
    good = make_mirror(tmp_path / "good", originals, compress=True)
    raw = tmp_path / "raw"
    download_mnist(raw, mirror=str(good), public_mirrors=())
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    with pytest.raises(DownloadError):
        download_mnist(raw, mirror=str(tmp_path / "empty"), public_mirrors=())
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".raw")] == []


def test_read_idx_rejects_wrong_size(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(3))
    with pytest.raises(ValueError, match="5"):
        read_idx(path)


def test_load_mnist_shapes(raw_dir):
    images, labels = load_mnist(raw_dir, "test")
    assert images.shape == (10000, 28, 28)
    assert labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))


SIZES = {"generator": 100, "generator_b": 50, "clean": 70, "noise_source": 30}


def test_splits_disjoint_and_sized():
    splits = make_splits(SIZES, seed=3)
    assert {name: len(indices) for name, indices in splits.items()} == SIZES
    union = np.concatenate(list(splits.values()))
    assert len(np.unique(union)) == len(union)
    assert union.min() >= 0
    assert union.max() < 60000


def test_splits_deterministic_per_seed():
    first = make_splits(SIZES, seed=3)
    second = make_splits(SIZES, seed=3)
    other = make_splits(SIZES, seed=4)
    for name in SIZES:
        assert np.array_equal(first[name], second[name])
    assert not np.array_equal(first["generator"], other["generator"])


def test_splits_too_large_names_sizes_and_sum():
    with pytest.raises(ValueError) as error:
        make_splits({"generator": 40000, "clean": 30000}, seed=0)
    message = str(error.value)
    assert "70000" in message
    assert "generator 40000" in message
    assert "clean 30000" in message


def test_test_subset():
    assert np.array_equal(draw_test_subset(10000, seed=0), np.arange(10000))
    subset = draw_test_subset(300, seed=0)
    assert len(np.unique(subset)) == 300
    assert np.array_equal(subset, draw_test_subset(300, seed=0))


def test_public_mirrors_from_env():
    from shapnoise.data import PUBLIC_MIRRORS, public_mirrors_from_env

    assert public_mirrors_from_env(None) == PUBLIC_MIRRORS
    assert public_mirrors_from_env("") == PUBLIC_MIRRORS
    assert public_mirrors_from_env("none") == ()
    assert public_mirrors_from_env("http://a/, http://b/") == ("http://a/", "http://b/")


def test_download_stage_without_any_source(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "empty").mkdir()
    env = {**os.environ, MIRROR_ENV: str(tmp_path / "empty"), "MNIST_PUBLIC_MIRRORS": "none"}
    result = subprocess.run([sys.executable, str(REPO / "stages" / "download.py"), "--out", str(tmp_path / "raw")],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "train-images-idx3-ubyte" in result.stderr
    assert MIRROR_ENV in result.stderr
    assert "amazonaws" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "raw").exists()
