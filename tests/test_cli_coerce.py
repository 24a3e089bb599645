"""``cli._coerce``: the commands' values converted without Pydantic give what Typer's own
(Pydantic) conversion gives, values and error messages alike, for every kind of parameter the
commands declare and for values only Typer accepts or refuses."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import pytest
import typer
from typer import _coercion, core
from typer.testing import CliRunner

import abfluss.cli  # noqa: F401  installs the conversion

ORIGINAL = _coercion.build_runtime_param


class Fmt(str, Enum):
    table = "table"
    json = "json"


app = typer.Typer(add_completion=False)


@app.command()
def show(
    paths: Annotated[Optional[list[Path]], typer.Argument()] = None,
    name: Annotated[Optional[str], typer.Option()] = None,
    text: Annotated[str, typer.Option()] = "default",
    where: Annotated[Optional[Path], typer.Option()] = None,
    there: Annotated[Path, typer.Option(exists=True, dir_okay=False)] = Path(__file__),
    fmt: Annotated[Fmt, typer.Option("--format")] = Fmt.table,
    loose: Annotated[Fmt, typer.Option(case_sensitive=False)] = Fmt.json,
    n: Annotated[int, typer.Option()] = 10,
    least: Annotated[Optional[int], typer.Option(min=1, max=50)] = None,
    rate: Annotated[float, typer.Option()] = 1,
    ratio: Annotated[Optional[float], typer.Option()] = None,
    tag: Annotated[Optional[list[str]], typer.Option()] = None,
    port: Annotated[Optional[list[int]], typer.Option()] = None,
    flag: Annotated[bool, typer.Option("--flag/--no-flag")] = False,
) -> None:
    for v in (paths, name, text, where, there, fmt, loose, n, least, rate, ratio, tag, port, flag):
        print(type(v).__name__, repr(v), [type(x).__name__ for x in v] if isinstance(v, list) else "")


@app.command()
def other() -> None:
    print("other")


CASES = [
    [], ["a", "b/c", ""], ["--name", "x y"], ["--name", ""], ["--name", "ümlaut\x1b"], ["--text", "t"],
    ["--where", "."], ["--where", ""], ["--where", "~/x"], ["--there", "/nonexistent/x"], ["--there", "/tmp"],
    ["--format", "json"], ["--format", "JSON"], ["--format", "nope"], ["--loose", "TABLE"],
    ["--n", "5"], ["--n", "-3"], ["--n", "007"], ["--n", "+5"], ["--n", "1_0"], ["--n", " 7"], ["--n", "x"],
    ["--n", "1e3"], ["--n", "10.0"], ["--n", "99999999999999999999999"], ["--n", ""],
    ["--least", "0"], ["--least", "1"], ["--least", "50"], ["--least", "51"],
    ["--rate", "1.5"], ["--rate", "-0"], ["--rate", ".5"], ["--rate", "1e3"], ["--rate", "nan"], ["--rate", "x"],
    ["--ratio", "0.1"], ["--tag", "a", "--tag", "b"], ["--port", "80", "--port", "443"], ["--port", "x"],
    ["--flag"], ["--no-flag"], ["--unknown"],
]


def _run(build, argv):
    core.build_runtime_param = build
    try:
        r = CliRunner().invoke(app, ["show", *argv])
    finally:
        core.build_runtime_param = INSTALLED
    return r.exit_code, r.output


INSTALLED = core.build_runtime_param


def test_installed():
    assert INSTALLED is not ORIGINAL


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) or "defaults" for c in CASES])
def test_same_as_typers_own_conversion(argv):
    assert _run(INSTALLED, argv) == _run(ORIGINAL, argv)
