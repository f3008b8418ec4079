"""Atomic file output and logging set-up shared by every stage.

A stage writes each output to a temporary file beside the target and renames it
into place only after the write succeeded, so a failed or interrupted run leaves
the previous output intact and never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

log = logging.getLogger(__name__)


def _default_mode(directory: bool) -> int:
    """Return the mode a plain open() or mkdir() would give under the current umask.

    mkstemp and mkdtemp create private (0600 and 0700) entries, which would make
    every output unreadable to the other members of a lab sharing the checkout.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary file lives in the target's directory so that the final
    ``os.replace`` stays on one file system and is atomic.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory=False))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; swap it in for ``target`` on success.

    The old directory is removed only after the new one is complete. Between the
    two renames there is a moment without ``target``, but never a partial one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory=True))
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write arrays to a compressed ``.npz`` file, atomically."""
    with atomic_path(path) as tmp:
        # np.savez_compressed appends ".npz" to names without it, so write through a handle.
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def read_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz`` file, checking that ``required`` keys exist."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found; run the stage that writes it (dvc repro)")
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    missing = [key for key in required if key not in arrays]
    if missing:
        raise ValueError(
            f"{path}: missing arrays {missing} (has {sorted(arrays)}); "
            "the file comes from another version of the pipeline, rerun its stage with dvc repro --force"
        )
    return arrays


def setup_logging(level: int = logging.INFO) -> None:
    """Configure the root logger for a stage script."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
