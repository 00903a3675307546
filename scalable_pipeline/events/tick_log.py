"""What a sensor tick logs: a line when it did something, nothing when it found nothing.

A tick that found nothing returns its skip reason only: the UI keeps it in the sensor's tick history and
the daemon prints it once (``Sensor <name> skipped: <reason>``). Logging the same line through
``context.log`` as well printed it twice, at INFO, every 30 s of ``dagster dev``.
"""

import logging

from scalable_pipeline.events.outbox import DeliveryRound


def delivery_acted(round_: DeliveryRound) -> bool:
    """The round logged, delivered or tried to deliver an alert (waiting and claimed entries are not news)."""
    return bool(round_.logged or round_.delivered or round_.failed)


def log_tick(log: logging.Logger, summary: str, acted: bool, failed: bool = False) -> None:
    """``summary`` at WARNING when a delivery failed, at INFO when the tick acted (launched runs, added or
    delivered alerts, quarantined a file); not at all otherwise."""
    if failed:
        log.warning(summary)
    elif acted:
        log.info(summary)
