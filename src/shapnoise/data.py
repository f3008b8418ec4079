"""MNIST: download with checksum verification, IDX parsing and disjoint splits."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from shapnoise.io import atomic_dir
from shapnoise.stage import StageError

log = logging.getLogger(__name__)

MIRROR_ENV = "MNIST_MIRROR"
# Comma-separated base URLs that replace the public mirrors; "none" turns them off.
PUBLIC_MIRRORS_ENV = "MNIST_PUBLIC_MIRRORS"

# The mirrors of torchvision.datasets.MNIST.mirrors (torchvision 0.29).
PUBLIC_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class IdxFile:
    name: str
    md5: str
    size: int


# MD5 and size of the uncompressed files, as published with the original data set.
MNIST_FILES = (
    IdxFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb", 47040016),
    IdxFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624", 60008),
    IdxFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea", 7840016),
    IdxFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637", 10008),
)

N_TRAIN = 60000
N_TEST = 10000

SPLIT_NAMES = (
    "generator",
    "generator_b",
    "generator_c",
    "clean",
    "noise_source",
    "adversarial_source",
    "adversarial_source_b",
)


class DownloadError(StageError):
    """No source delivered a file, or a file failed verification."""


class _SourceMissing(Exception):
    """The source does not have the file or cannot be reached; the next source is tried."""


def _fetch(base: str, filename: str, timeout: float) -> bytes:
    """Read ``filename`` from a local directory or a base URL."""
    if "://" not in base:
        path = Path(base) / filename
        if not path.is_file():
            raise _SourceMissing(f"{path}: not found")
        return path.read_bytes()
    url = base.rstrip("/") + "/" + filename
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _SourceMissing(f"{url}: {error}") from error


def _decompress(data: bytes, origin: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DownloadError(
            f"{origin}: the gzip file is truncated or corrupted ({error}). "
            f"Replace it, or point {MIRROR_ENV} at a directory or URL with intact MNIST files."
        ) from error


def _verify(content: bytes, expected: IdxFile, origin: str) -> None:
    if len(content) != expected.size:
        raise DownloadError(
            f"{origin}: {expected.name} has {len(content)} bytes uncompressed, expected {expected.size} "
            f"(truncated or not MNIST). Replace it, or point {MIRROR_ENV} at intact MNIST files."
        )
    digest = hashlib.md5(content).hexdigest()
    if digest != expected.md5:
        raise DownloadError(
            f"{origin}: {expected.name} has MD5 {digest}, expected {expected.md5} (corrupted). "
            f"Replace it, or point {MIRROR_ENV} at intact MNIST files."
        )


def public_mirrors_from_env(value: str | None) -> tuple[str, ...]:
    """Return the public mirrors to try: the defaults when ``value`` is unset or empty, none for "none"."""
    if not value:
        return PUBLIC_MIRRORS
    if value.strip().lower() == "none":
        return ()
    return tuple(url.strip() for url in value.split(",") if url.strip())


def mnist_sources(mirror: str | None, public_mirrors: Sequence[str] = PUBLIC_MIRRORS) -> list[str]:
    """List the sources in the order they are tried: the mirror variable first, then the public mirrors."""
    sources = []
    if mirror:
        sources.append(mirror[len("file://"):] if mirror.startswith("file://") else mirror)
    sources.extend(public_mirrors)
    return sources


def fetch_idx_file(expected: IdxFile, sources: Sequence[str], timeout: float = 30.0) -> bytes:
    """Return the verified, uncompressed contents of one MNIST file.

    Each source is asked for ``NAME.gz`` and then ``NAME``. A source without the
    file is skipped; a file that is present but fails verification raises at
    once, because silently falling back would hide a damaged mirror.
    """
    misses = []
    for base in sources:
        for filename in (expected.name + ".gz", expected.name):
            try:
                data = _fetch(base, filename, timeout)
            except _SourceMissing as miss:
                misses.append(str(miss))
                continue
            origin = f"{base.rstrip('/')}/{filename}"
            content = _decompress(data, origin) if filename.endswith(".gz") else data
            _verify(content, expected, origin)
            log.info("%s: verified (MD5 %s) from %s", expected.name, expected.md5, origin)
            return content
    tried = "\n  ".join(misses) if misses else "(no sources)"
    raise DownloadError(
        f"{expected.name}: no source could deliver this file. Tried:\n  {tried}\n"
        f"Set {MIRROR_ENV} to a local directory or base URL that holds the MNIST files "
        "(gzip-compressed or plain), or allow access to the public mirrors."
    )


def download_mnist(
    raw_dir: str | os.PathLike,
    mirror: str | None = None,
    public_mirrors: Sequence[str] = PUBLIC_MIRRORS,
    timeout: float = 30.0,
) -> None:
    """Write the four uncompressed, verified MNIST files into ``raw_dir``.

    The directory is replaced only when all four files were verified, so a
    failure leaves the previous ``raw_dir`` as it was and no partial file.
    """
    sources = mnist_sources(mirror, public_mirrors)
    log.info("MNIST sources, in order: %s", ", ".join(sources))
    with atomic_dir(raw_dir) as tmp:
        for expected in MNIST_FILES:
            (tmp / expected.name).write_bytes(fetch_idx_file(expected, sources, timeout))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an uncompressed IDX file of unsigned bytes (MNIST's format) into an array."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {data[:4].hex()})")
    n_dims = data[3]
    header_size = 4 + 4 * n_dims
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims))
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: invalid IDX file: the header declares shape {shape}, but the file contains {array.size} values")
    return array.reshape(shape)


def load_mnist(raw_dir: str | os.PathLike, subset: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images, labels)`` of ``subset`` ("train" or "test"): uint8 (N, 28, 28) and int64 (N,)."""
    prefix = {"train": "train", "test": "t10k"}[subset]
    raw_dir = Path(raw_dir)
    images = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte").astype(np.int64)
    return images, labels


def to_float(images: np.ndarray) -> np.ndarray:
    """Scale uint8 images to float32 in [0, 1], the pixel range used everywhere in the pipeline."""
    return images.astype(np.float32) / 255.0


def make_splits(sizes: dict[str, int], seed: int, n_total: int = N_TRAIN) -> dict[str, np.ndarray]:
    """Draw disjoint, sorted index sets of the given sizes from ``range(n_total)``."""
    total = sum(sizes.values())
    if total > n_total:
        listing = " + ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValueError(
            f"split.sizes add up to {total} ({listing}), more than the {n_total} MNIST training images; "
            "make some splits smaller in params.yaml"
        )
    order = np.random.default_rng(seed).permutation(n_total)
    splits = {}
    start = 0
    for name, size in sizes.items():
        splits[name] = np.sort(order[start:start + size]).astype(np.int64)
        start += size
    return splits


def draw_test_subset(size: int, seed: int, n_total: int = N_TEST) -> np.ndarray:
    """Return sorted test-image indices: all of them when ``size == n_total``, else a seeded sample."""
    if size == n_total:
        return np.arange(n_total, dtype=np.int64)
    # A different stream from the training splits, so changing one does not shift the other.
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(n_total, size=size, replace=False)).astype(np.int64)
