import os
import stat

import numpy as np
import pytest

from shapnoise.io import atomic_dir, atomic_path, read_npz, write_json, write_npz


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_outputs_follow_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "folder") as folder:
            (folder / "file").write_text("x")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "a.json") == 0o644
    assert mode(tmp_path / "folder") == 0o755


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stage crashed")
    assert target.read_text() == '{\n  "version": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_failed_directory_keeps_previous(tmp_path):
    target = tmp_path / "reports"
    with atomic_dir(target) as folder:
        (folder / "report.md").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as folder:
            (folder / "report.md").write_text("new, half")
            raise RuntimeError("stage crashed")
    assert (target / "report.md").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["reports"]


def test_read_npz_missing_array_names_it(tmp_path):
    write_npz(tmp_path / "a.npz", images=np.zeros(2))
    with pytest.raises(ValueError, match="labels"):
        read_npz(tmp_path / "a.npz", required=("images", "labels"))
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        read_npz(tmp_path / "missing.npz")
