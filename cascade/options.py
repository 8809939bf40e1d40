"""The command line's option values, checked where click parses them: a bad value is one usage error naming
its flag, and the library functions get typed values (a shard as (i, n), a model as a path or a list)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click


class ShardType(click.ParamType):
    """--shard i/n -> (i, n), 0 <= i < n."""

    name = "i/n"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            index, count = (int(v) for v in str(value).split("/"))
        except ValueError:
            self.fail(f"{value!r}: expected i/n, e.g. 0/4", param, ctx)
        if not 0 <= index < count:
            self.fail(f"{value!r}: expected 0 <= i < n", param, ctx)
        return index, count


class ModelsType(click.ParamType):
    """One fold's model, or its ensemble written a,b,c -> a path, or a list of them."""

    name = "path[,path...]"

    def convert(self, value, param, ctx) -> Path | list[Path]:
        if isinstance(value, (Path, list)):
            return value
        paths = [Path(p.strip()) for p in str(value).split(",") if p.strip()]
        if not paths:
            self.fail(f"{value!r}: no model path", param, ctx)
        return paths[0] if len(paths) == 1 else paths


class BentShareType(click.ParamType):
    """A share of bent wrists between 0 and 1, or none/off -> None (a plain mean)."""

    name = "share|none"

    def convert(self, value, param, ctx) -> float | None:
        if value is None or isinstance(value, float):
            return value
        if str(value).strip().lower() in ("none", "off"):
            return None
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not 0.0 <= share <= 1.0:
            self.fail(f"{value!r}: expected a share between 0 and 1, or 'none'", param, ctx)
        return share


def all_cores() -> int:
    return os.cpu_count() or 1


def workers_option(help: str):
    """--workers, its default (every core) worked out when the command runs, so the library always gets a
    number."""
    return click.option("--workers", default=all_cores, type=click.IntRange(1), help=help)


def renamed_option(old: str, new: str, **attrs):
    """`old`, the earlier spelling of the option `new`, still accepted: left out of the help, and a note on
    stderr when used. Stack it under `new`'s own click.option."""
    old_name, new_name = (flag.lstrip("-").replace("-", "_") for flag in (old, new))
    hidden_name = f"renamed_{old_name}"

    def decorate(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            value = kwargs.pop(hidden_name)
            if value is not None:
                if kwargs[new_name] is not None:
                    raise click.UsageError(f"{old} is the old spelling of {new}: give {new} only")
                click.echo(f"note: {old} is now spelled {new}", err=True)
                kwargs[new_name] = value
            return fn(*args, **kwargs)
        return click.option(old, hidden_name, hidden=True, **attrs)(command)
    return decorate
