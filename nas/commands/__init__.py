"""`cosim` subcommands that run the searches (they sit here because `nas` is above `cosim`)."""
