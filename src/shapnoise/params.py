"""Reading and validating ``params.yaml``.

Each stage loads only its own section and checks it here, so a wrong value
stops the stage with a message that names the key, the value and what is
allowed, before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import yaml


class ParamsError(ValueError):
    """An invalid, missing or unknown entry in the params file."""


class Section:
    """One mapping of the params file, addressed by its dotted path (``split.sizes``)."""

    def __init__(self, values: Any, path: str, source: str | os.PathLike = "params.yaml"):
        self.source = str(source)
        self.path = path
        if not isinstance(values, dict):
            raise ParamsError(f"{self.source}: {path} must be a mapping of keys to values, got {values!r}")
        self.values = values

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, value: Any, expected: str) -> ParamsError:
        return ParamsError(
            f"{self.source}: {self.key_path(key)} = {value!r} is invalid: expected {expected}. "
            f"Fix it in {self.source} or override it with `dvc exp run -S {self.key_path(key)}=...`."
        )

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Raise for keys that this section does not know (typos would otherwise be ignored)."""
        allowed = list(allowed)
        unknown = sorted(set(self.values) - set(allowed))
        if unknown:
            raise ParamsError(
                f"{self.source}: unknown key(s) {', '.join(self.key_path(k) for k in unknown)}; "
                f"allowed keys in {self.path or 'the top level'}: {', '.join(allowed)}"
            )

    def raw(self, key: str) -> Any:
        if key not in self.values:
            raise ParamsError(f"{self.source}: missing key {self.key_path(key)}; add it to {self.source}")
        return self.values[key]

    def section(self, key: str) -> "Section":
        return Section(self.raw(key), self.key_path(key), self.source)

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.raw(key)
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        if not ok:
            raise self.fail(key, value, _range_text("an integer", minimum, maximum))
        return value

    def number(self, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        value = self.raw(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
        if not ok:
            raise self.fail(key, value, _range_text("a number", minimum, maximum))
        return float(value)

    def choice(self, key: str, choices: Iterable[str]) -> str:
        choices = list(choices)
        value = self.raw(key)
        if value not in choices:
            raise self.fail(key, value, "one of " + ", ".join(repr(c) for c in choices))
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value


def _range_text(kind: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


def load_section(name: str, params_file: str | os.PathLike = "params.yaml") -> Section:
    """Load the top-level section ``name`` of ``params_file``."""
    path = Path(params_file)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found; run from the repository root")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: invalid YAML: {error}") from error
    return Section(data, "", path).section(name)
