"""The `cosim` command line: one program, one subcommand per job.

Each module in `cosim.commands` exposes `register(app)`, which adds its commands to the
shared Typer app. Commands that print a table also take `--json`; long work shows progress
unless `--quiet`.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="cosim",
    no_args_is_help=True,
    add_completion=False,
    help="Cycle-level co-simulation of approximate DNNs on multi-pod systolic arrays, and explainable NAS.",
)

# Command modules, in the order they appear in --help.
COMMAND_MODULES = ["demo", "multipliers", "estimate", "flash", "simulate", "validate", "approximate", "search"]

for _mod in COMMAND_MODULES:
    importlib.import_module(f"cosim.commands.{_mod}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
