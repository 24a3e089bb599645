"""Typer's conversion of command-line values, without Pydantic for the types the commands use.

Typer (0.2x) converts every parameter's value, defaults included, through a Pydantic
``TypeAdapter`` built on first use: importing Pydantic and building the adapters is 0.10-0.15
CPU s of every ``abfluss`` run, a third of what ``findings`` or ``ledger`` take. For the
annotations abfluss declares (``str``, ``Path``, an ``Enum``, ``int``, ``float``, ``bool`` and
lists of them) the value is converted here the way Typer's adapters convert it, calling Typer's own
helpers for choices and paths. Anything else, and any value this does not accept (a mistyped
choice, ``--limit x``, a number out of range), goes to Typer's own Pydantic conversion, so its
result and its error message are Typer's. ``install`` does nothing on a Typer without this
seam (``typer.core.build_runtime_param``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, get_args, get_origin

#: Numbers accepted here; Pydantic accepts these and more (``1_0``, ``+5``, `` 7``, ``1e3``),
#: which go to it.
_INT = re.compile(r"-?[0-9]{1,18}")
_FLOAT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")


class _Slow(Exception):
    """This value is left to Typer's own conversion."""


def install() -> None:
    try:
        from typer import _coercion, core
        from typer._param_types import coerce_cli_choice, coerce_cli_path  # noqa: F401  the helpers used below
    except ImportError:
        return
    typers = getattr(core, "build_runtime_param", None)
    if typers is None or typers is not getattr(_coercion, "build_runtime_param", None):
        return

    @dataclass(frozen=True)
    class FastRuntimeParam(_coercion.RuntimeParam):
        convert: Callable[[Any, Any, Any], Any]
        descriptor: Any

        def _coerce_value(self, value, param, ctx):
            try:
                return self.convert(value, param, ctx)
            except Exception:  # Typer's result, or its error message
                return typers(self.descriptor)._coerce_value(value, param=param, ctx=ctx)

    def build(descriptor):
        convert = None
        if descriptor.file_annotation is None:
            convert = converter(descriptor.annotation, descriptor.parameter_info)
        if convert is None:
            return typers(descriptor)
        return FastRuntimeParam(annotation=descriptor.annotation, parameter_info=descriptor.parameter_info,
                                convert=convert, descriptor=descriptor)

    core.build_runtime_param = build


def converter(annotation, info) -> Callable[[Any, Any, Any], Any] | None:
    """A function ``(value, param, ctx) -> value`` converting as Typer's adapter for
    ``annotation`` does (raising where this leaves the value to Typer), or None for an
    annotation left to Typer altogether."""
    if get_origin(annotation) is list:
        args = get_args(annotation)
        item = converter(args[0], info) if len(args) == 1 else None
        if item is None:
            return None
        return lambda value, param, ctx: [item(v, param, ctx) for v in
                                          (value if isinstance(value, (list, tuple)) else [value])]
    if get_origin(annotation) is not None or not isinstance(annotation, type) or info.parser is not None:
        return None
    if issubclass(annotation, Enum):
        from typer._param_types import coerce_cli_choice
        choices = list(annotation)
        return lambda value, param, ctx: coerce_cli_choice(value, choices=choices,
                                                           case_sensitive=info.case_sensitive, ctx=ctx)
    if annotation is int or annotation is float:
        return None if info.clamp else _number(annotation, info.min, info.max)
    if annotation is str:
        return _str
    if annotation is bool:
        return _bool
    if issubclass(annotation, Path) and (info.path_type is None or info.path_type is annotation):
        return _path(annotation, info)
    return None


def _str(value, param, ctx):
    if type(value) is not str:
        raise _Slow
    return value


def _bool(value, param, ctx):
    if type(value) is not bool:
        raise _Slow
    return value


def _number(kind: type, low, high):
    pattern = _INT if kind is int else _FLOAT

    def convert(value, param, ctx):
        if type(value) is kind or (kind is float and type(value) is int):
            number = kind(value)
        elif type(value) is str and pattern.fullmatch(value):
            number = kind(value)
        else:
            raise _Slow
        if (low is not None and number < low) or (high is not None and number > high):
            raise _Slow
        return number
    return convert


def _path(kind: type, info):
    from typer._param_types import coerce_cli_path

    def convert(value, param, ctx):
        if type(value) is str:
            value = kind(value)  # what Pydantic's Path validation gives for any text
        elif not isinstance(value, kind):
            raise _Slow
        return coerce_cli_path(value, info, path_type=kind, param=param, ctx=ctx)
    return convert
