"""The `cosim` program: the simulation commands of `cosim.cli` plus the search commands here."""

from __future__ import annotations

import importlib

from cosim.cli import new_app
from cosim.cli import register_commands as register_simulation_commands

# Search-side command modules (`nas.commands`); `demo` is listed first in --help.
COMMAND_MODULES = ["flash", "approximate", "search"]

app = new_app()
importlib.import_module("nas.commands.demo").register(app)
register_simulation_commands(app)
for _mod in COMMAND_MODULES:
    importlib.import_module(f"nas.commands.{_mod}").register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
