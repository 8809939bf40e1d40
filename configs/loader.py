"""YAML -> typed dataclasses: every value checked against its field's type, with `key=value` overrides from
the command line."""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from plumbing.errors import CascadeError, DataError
from plumbing.values import did_you_mean, shorten

T = TypeVar("T")


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """['epochs=3', 'render.noise=0.1'] -> {'epochs': 3, 'render.noise': 0.1}; values are parsed as YAML."""
    if isinstance(pairs, (str, bytes)):
        raise CascadeError(f"overrides {pairs!r}: expected a list of key=value strings")
    out = {}
    for pair in pairs:
        if not isinstance(pair, str):
            raise CascadeError(f"override {pair!r} is not a key=value string")
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CascadeError(f"override {pair!r} is not key=value")
        try:
            out[key.strip()] = read_yaml(value, f"override {shorten(pair)!r}") if value.strip() else None
        except yaml.YAMLError as exc:
            raise CascadeError(f"override {pair!r}: value is not valid YAML ({str(exc).splitlines()[0]})") from None
    return out


def _set_dotted(doc: dict, dotted: str, value: Any, where: str) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        if doc.get(p) is None:  # an empty YAML section (`region:`) reads as null
            doc[p] = {}
        doc = doc[p]
        if not isinstance(doc, dict):
            raise DataError(where, f"override {dotted!r}: {p!r} is not a section")
    doc[last] = value


# --- type checking against the dataclass annotations ---------------------------------------------------------

class _Mismatch(Exception):
    def __init__(self, key: str, value: Any, hint: Any):
        super().__init__(key)
        self.key, self.value, self.hint = key, value, hint


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def _describe(hint: Any) -> str:
    """A type hint in the words of an error message: 'an integer', 'a list of 2 numbers'..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[hint]
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint in (list, tuple) or origin in (list, tuple):
        if args and (origin is list or args[-1] is Ellipsis):
            return f"a list of {_PLURAL.get(args[0], 'values')}"
        if args and len(set(args)) == 1:
            return f"a list of {len(args)} {_PLURAL.get(args[0], 'values')}"
        return f"a list of {len(args)} values" if args else "a list"
    if hint is dict or origin is dict:
        return f"a mapping of {_PLURAL.get(args[0], 'keys')} to {_PLURAL.get(args[1], 'values')}" if args \
            else "a mapping"
    return getattr(hint, "__name__", str(hint))


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 8
_REPR.maxstring = _REPR.maxother = 60


def _show(value: Any) -> str:
    """A value as YAML would write it, cut short if long; a huge value is never rendered whole to be cut."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return shorten(_REPR.repr(value))


# --- reading YAML: no repeated keys, no aliases that expand past any real config --------------------------------

MAX_NODES = 100_000  # values in a config once its aliases are expanded; the largest default has a few hundred


class _Duplicate(Exception):
    def __init__(self, key: Any, first: int, again: int):
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


class _Loader(yaml.SafeLoader):
    """SafeLoader refusing a key repeated in one mapping (PyYAML keeps the last value, silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # `<<: *base` overrides by design; complex keys are left to the type checks
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in lines:
                    raise _Duplicate(key, lines[key], line)
                lines[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(text: str, where: str) -> Any:
    """YAML text -> plain values; a repeated key or an alias bomb is a DataError naming `where`."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader)
    except _Duplicate as exc:
        raise DataError(where, f"line {exc.again}: key {_show(exc.key)} repeats the one of line {exc.first} (a "
                               "repeated key would silently replace the first value)") from None
    try:
        _count_nodes(doc, {}, set())
    except _TooBig as exc:
        raise DataError(where, str(exc)) from None
    return doc


class _TooBig(Exception):
    pass


def _count_nodes(value: Any, sizes: dict, active: set) -> int:
    """Values in `value` with every alias expanded, counted without expanding any (each shared list once)."""
    if not isinstance(value, (list, dict)):
        return 1
    key = id(value)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise _TooBig("an alias refers to itself (a recursive value has no end)")
    if len(active) > 100:
        raise _TooBig("values nested more than 100 deep")
    active.add(key)
    total = 1
    for item in (value.values() if isinstance(value, dict) else value):
        total += _count_nodes(item, sizes, active)
        if total > MAX_NODES:
            raise _TooBig(f"its aliases expand to more than {MAX_NODES:,} values (an alias bomb?); write the "
                          "values out")
    active.discard(key)
    sizes[key] = total
    return total


def _check(value: Any, hint: Any, key: str, where: str) -> Any:
    """value checked against the type hint and converted (int -> float, numeric string -> float, list -> tuple,
    mapping -> nested dataclass); raises _Mismatch naming the innermost dotted key that is wrong."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, {} if value is None else value, where, f"{key}.")  # an empty section: the defaults
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, hint, key, where)
    if hint in (bool, int, float, str):
        return _check_scalar(value, hint, key)
    if hint in (list, tuple) or origin in (list, tuple):
        return _check_sequence(value, hint, key, where)
    if hint is dict or origin is dict:
        return _check_mapping(value, hint, key, where)
    return value  # a hint this checker does not know: left to the dataclass


def _check_union(value: Any, hint: Any, key: str, where: str) -> Any:
    """The first arm of X | Y | None that takes the value."""
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    arms = [a for a in args if a is not type(None)]
    if len(arms) == 1:  # X | None: X's own message, which names the innermost key
        try:
            return _check(value, arms[0], key, where)
        except _Mismatch as exc:
            raise (_Mismatch(key, value, hint) if exc.key == key else exc) from None
    for arm in arms:
        try:
            return _check(value, arm, key, where)
        except _Mismatch:
            pass
    raise _Mismatch(key, value, hint)


def _check_scalar(value: Any, hint: type, key: str) -> Any:
    """A bool, int, float or str; a bool is never taken for a number."""
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is float:
        number = _finite_number(value)
        if number is not None:
            return number
    raise _Mismatch(key, value, hint)


def _finite_number(value: Any) -> float | None:
    """value as a finite float, a string too (YAML reads `1e-3`, having no dot, as one); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _check_sequence(value: Any, hint: Any, key: str, where: str) -> list | tuple:
    """A YAML list as list[X] (any length), tuple[X, ...] (any length) or tuple[X, Y] (exactly that many)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(key, value, hint)
    if not args:
        items = list(value)
    elif origin is list or args[-1] is Ellipsis:  # any length
        items = [_check(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    elif len(args) == len(value):
        items = [_check(v, a, f"{key}[{i}]", where) for i, (v, a) in enumerate(zip(value, args))]
    else:
        raise _Mismatch(key, value, hint)
    return items if list in (hint, origin) else tuple(items)


def _check_mapping(value: Any, hint: Any, key: str, where: str) -> dict:
    """A YAML mapping as dict[K, V], each key and value checked."""
    args = typing.get_args(hint)
    if value is None:  # `class_thresholds:` with nothing after it
        return {}
    if not isinstance(value, dict):
        raise _Mismatch(key, value, hint)
    if not args:
        return dict(value)
    return {_check(k, args[0], key, where): _check(v, args[1], f"{key}.{k}", where) for k, v in value.items()}


def build(cls: type[T], doc: dict, where: str, _prefix: str = "") -> T:
    """dict -> dataclass cls: each value checked against its field's type hint, nested sections built
    recursively; unknown keys are an error. A ValueError from __post_init__ becomes a DataError; in a nested
    section its message should start with the field name, so that the prefix makes it a dotted key."""
    if not isinstance(doc, dict):
        section = f"{_prefix[:-1]}: " if _prefix else ""
        raise DataError(where, f"{section}expected a mapping of {cls.__name__} settings, got {_show(doc)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(str(k) for k in doc if k not in names)
    if unknown:
        raise DataError(where, _unknown_keys(unknown, names, _prefix, cls.__name__))
    kwargs = {}
    for name, value in doc.items():
        try:
            kwargs[name] = _check(value, hints[name], _prefix + name, where)
        except _Mismatch as exc:
            raise DataError(where, f"{exc.key}: {_show(exc.value)} is not {_describe(exc.hint)}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError(where, f"{_prefix}{exc}") from None


def _unknown_keys(unknown: list[str], names: set[str], prefix: str, section: str) -> str:
    """The complaint about keys a section lacks: each with the key it most likely misspells; the section's keys
    listed only where some unknown key resembles none of them."""
    guesses = [did_you_mean(key, names, prefix) for key in unknown]
    shown = ", ".join(prefix + key + guess for key, guess in zip(unknown, guesses))
    known = "" if all(guesses) else f" (known: {', '.join(sorted(names))})"
    return f"unknown key{'s' if len(unknown) > 1 else ''} {shown} for {section}{known}"


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> T:
    """Defaults of cls, updated by the YAML file at path, updated by the overrides."""
    doc: dict = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            doc = read_yaml(Path(path).read_text(encoding="utf-8"), where)
        except FileNotFoundError:
            raise DataError(path, "config file not found") from None
        except IsADirectoryError:
            raise DataError(path, "is a folder, expected a YAML config file") from None
        except UnicodeDecodeError as exc:
            raise DataError(path, f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
        except OSError as exc:
            raise DataError(path, f"cannot read the config ({exc.strerror or exc})") from None
        except yaml.YAMLError as exc:
            raise DataError(path, f"not valid YAML ({str(exc).splitlines()[0]})") from None
        if doc is None:  # an empty file: the defaults
            doc = {}
        if not isinstance(doc, dict):
            raise DataError(path, f"expected a mapping of settings (key: value lines), got a YAML {type(doc).__name__}")
    pairs = overrides if isinstance(overrides, dict) else parse_overrides(overrides)
    for key, value in pairs.items():
        _set_dotted(doc, key, value, where)
    return build(cls, doc, where)
