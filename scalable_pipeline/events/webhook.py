"""POSTing JSON to the alert webhook with the standard library; the URL never leaves this module."""

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

WEBHOOK_ENV = "SCALABLE_PIPELINE_ALERT_WEBHOOK"
TIMEOUT_SECONDS = 5.0
REDACTED = "<webhook>"


class WebhookError(Exception):
    """A failed delivery; its message is already redacted."""


def redact(text: str, url: str) -> str:
    """``text`` with the URL, its host and its path (Slack keeps the secret there) replaced."""
    parts = urllib.parse.urlsplit(url)
    for secret in (url, parts.path if len(parts.path) > 1 else "", parts.query, parts.netloc):
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_SECONDS) -> int:
    """POST ``payload``; return the 2xx status or raise :class:`WebhookError` (never naming the URL)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        message = f"HTTP {error.code} {error.reason}"
    except urllib.error.URLError as error:
        message = f"unreachable: {error.reason}"
    except (OSError, ValueError, http.client.HTTPException) as error:
        message = f"{type(error).__name__}: {error}"
    raise WebhookError(redact(message, url))
