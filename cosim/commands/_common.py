"""Helpers shared by the command modules: JSON output, errors, atomic writes."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console

from traces.atomic import atomic_write_text  # noqa: F401 (re-exported for the commands)

from ..jsonutil import jsonable

# Tables go to stdout; when stdout is not a terminal (pipes, CI logs) rich would wrap them at
# 80 columns, so give them room.
console = Console(stderr=True, soft_wrap=True)
out_console = Console() if sys.stdout.isatty() else Console(width=200)


def print_json(data: Any) -> None:
    """Print `data` as JSON on stdout (the machine-readable twin of every table)."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print an error on stderr and exit with `code`."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
