"""One delivery round of the outbox to the webhook named by ``SCALABLE_PIPELINE_ALERT_WEBHOOK`` (if set)."""

import os

from scalable_pipeline.events.outbox import DeliveryPolicy, DeliveryRound, Outbox
from scalable_pipeline.events.webhook import WEBHOOK_ENV, post_json


def deliver(outbox: Outbox, now: float, policy: DeliveryPolicy) -> tuple[DeliveryRound, str]:
    """Deliver what is due; what the round did, and a line saying so (never naming the URL)."""
    url = os.environ.get(WEBHOOK_ENV)
    send = (lambda payload: post_json(url, payload)) if url else None
    round_: DeliveryRound = outbox.deliver_due(now, send, policy)
    return round_, (
        f"logged {round_.logged}, delivered {round_.delivered}, failed {round_.failed}, waiting {round_.waiting}, "
        f"claimed by another tick {round_.busy}; webhook {'set' if url else 'not set'}"
    )


def delivery_acted(round_: DeliveryRound) -> bool:
    """The round logged, delivered or tried to deliver an alert (waiting and claimed entries are not news)."""
    return bool(round_.logged or round_.delivered or round_.failed)
