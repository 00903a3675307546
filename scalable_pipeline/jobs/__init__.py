"""Op jobs that are not asset materializations (operations on stored data)."""
