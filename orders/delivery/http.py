"""The HTTP provider backend for SMS and WhatsApp: a JSON-over-HTTPS contract (docs/delivery.md).

    POST {base_url}/messages
    Authorization: Bearer {token}
    Idempotency-Key: {message_id}
    {"to": "+9198...", "from": "{sender}", "body": "...", "message_id": "...", "channel": "sms"}

2xx: accepted, {"id": "<provider message id>"}. 429 (with Retry-After), 5xx, timeouts and
connection errors: transient. Any other 4xx: permanent, with the reason the provider gives
({"error": {"code": "invalid_number", "message": "..."}})."""

import json
import re
import urllib.error
import urllib.request

from orders.delivery import (
    DeliveryPermanentError,
    DeliveryTransientError,
    OutgoingMessage,
    SendResult,
)

EXCERPT = 500
_REASON_RE = re.compile(r"^[a-z0-9_.-]{1,64}$")


def _excerpt(raw: bytes) -> str:
    return raw[:EXCERPT].decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only; an HTTP date is ignored)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86400 else None


def _reason(raw: bytes, status: int) -> str:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else error
    if isinstance(code, str) and _REASON_RE.match(code.lower()):
        return code.lower()
    return f"http_{status}"


class HttpProviderBackend:
    def __init__(
        self,
        *,
        channel: str,
        name: str = "http",
        base_url: str = "",
        token: str = "",
        sender: str = "",
        timeout: float = 10.0,
        **options,
    ):
        if not base_url:
            raise ValueError(f"The {channel} provider has no base_url")
        self.channel = channel
        self.name = name
        self.url = base_url.rstrip("/") + "/messages"
        self.token = token
        self.sender = sender
        self.timeout = float(timeout)

    def send(self, message: OutgoingMessage) -> SendResult:
        body = json.dumps(
            {
                "to": message.to,
                "from": self.sender,
                "body": message.text,
                "message_id": message.message_id,
                "channel": message.channel,
            }
        ).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "Authorization": f"Bearer {self.token}",
                "Idempotency-Key": message.message_id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, raw = response.status, response.read(64 * 1024)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(64 * 1024)
            excerpt = _excerpt(raw)
            if status == 429 or status >= 500:
                raise DeliveryTransientError(
                    f"HTTP {status} from {self.name}",
                    http_status=status,
                    excerpt=excerpt,
                    retry_after=_retry_after(exc.headers.get("Retry-After")),
                ) from exc
            raise DeliveryPermanentError(
                f"HTTP {status} from {self.name}: {excerpt}",
                reason=_reason(raw, status),
                http_status=status,
                excerpt=excerpt,
            ) from exc
        except TimeoutError as exc:
            raise DeliveryTransientError(f"Timed out after {self.timeout}s") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryTransientError(f"Connection failed: {exc}") from exc
        excerpt = _excerpt(raw)
        try:
            provider_id = str(json.loads(raw or b"{}").get("id") or "")
        except (ValueError, AttributeError):
            provider_id = ""
        return SendResult(
            provider_message_id=provider_id[:128], http_status=status, response_excerpt=excerpt
        )
