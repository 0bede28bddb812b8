"""The simulation half of the `cosim` command line: one subcommand per job.

Each module in `cosim.commands` exposes `register(app)`, which adds its commands to a Typer app.
The full program (with the search commands of `nas.commands`, which sit above `cosim` in the
package graph) is assembled in `nas.cli`, the console script's entry point; `app` here holds
only the simulation commands. Commands that print a table also take `--json`; long work shows
progress unless `--quiet`.
"""

from __future__ import annotations

import importlib

import typer

HELP = "Cycle-level co-simulation of approximate DNNs on multi-pod systolic arrays, and explainable NAS."

# Command modules, in the order they appear in --help.
COMMAND_MODULES = ["multipliers", "estimate", "simulate", "validate"]


def new_app() -> typer.Typer:
    """An empty `cosim` Typer app."""
    return typer.Typer(name="cosim", no_args_is_help=True, add_completion=False, help=HELP)


def register_commands(app: typer.Typer) -> None:
    """Add the simulation commands (`COMMAND_MODULES`) to `app`."""
    for mod in COMMAND_MODULES:
        importlib.import_module(f"cosim.commands.{mod}").register(app)


app = new_app()
register_commands(app)
