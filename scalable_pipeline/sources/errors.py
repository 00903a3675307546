"""Errors any source may raise."""


class SourceUnavailableError(ConnectionError):
    """The source cannot be reached (not mounted, refused, timed out): an outage, so it counts towards the
    source's circuit breaker, which counts only ``OSError`` and its subclasses, like this one."""
