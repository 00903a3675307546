"""Sensors: thin layers over the plain modules that do the work."""
