"""What a sensor tick logs: a line when it did something, nothing when it found nothing.

A tick that found nothing returns its skip reason only: the UI keeps it in the sensor's tick history and
the daemon prints it once (``Sensor <name> skipped: <reason>``); logging it through ``context.log`` too
would print it twice, at INFO, at every tick.
"""

import logging


def log_tick(log: logging.Logger, summary: str, acted: bool, failed: bool = False) -> None:
    """``summary`` at WARNING when a delivery failed, at INFO when the tick acted (launched runs, added or
    delivered alerts, quarantined a file); not at all otherwise."""
    if failed:
        log.warning(summary)
    elif acted:
        log.info(summary)
