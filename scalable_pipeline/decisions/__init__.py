"""Pure decision functions: no Dagster, no I/O, tested on their own."""
