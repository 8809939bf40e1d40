"""YAML configs under configs/ -> typed dataclasses, with `key=value` overrides from the command line."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from .errors import CascadeError, DataError

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """['epochs=3', 'render.noise=0.1'] -> {'epochs': 3, 'render.noise': 0.1}; values are parsed as YAML."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CascadeError(f"override {pair!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def _set_dotted(doc: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        doc = doc.setdefault(p, {})
        if not isinstance(doc, dict):
            raise CascadeError(f"override {dotted!r}: {p!r} is not a section")
    doc[last] = value


def build(cls: type[T], doc: dict, where: str) -> T:
    """dict -> dataclass cls, recursing into nested dataclass fields; unknown keys are an error."""
    if not isinstance(doc, dict):
        raise DataError(where, f"expected a mapping for {cls.__name__}, got {type(doc).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(doc) - names)
    if unknown:
        raise DataError(where, f"unknown key(s) {', '.join(unknown)} for {cls.__name__} "
                               f"(known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in doc.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = build(hint, value or {}, f"{where}:{name}")
        elif hint in (float,) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif hint in (tuple, tuple[float, float], tuple[int, int]) or typing.get_origin(hint) is tuple:
            value = tuple(value)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError(where, str(exc)) from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> T:
    """Defaults of cls, updated by the YAML file at path, updated by the overrides."""
    doc: dict = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise DataError(path, "config file not found") from None
        except yaml.YAMLError as exc:
            raise DataError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
    pairs = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    for key, value in pairs.items():
        _set_dotted(doc, key, value)
    return build(cls, doc, where)
