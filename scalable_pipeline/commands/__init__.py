"""The command line's subcommands, one module each; ``cli.py`` assembles them (each module's ``register``)."""
