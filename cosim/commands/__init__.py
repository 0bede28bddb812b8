"""Subcommands of the `cosim` program; each module has `register(app)`."""
