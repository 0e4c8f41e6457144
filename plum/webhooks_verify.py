"""Verify a Plum webhook — standard library only, so a receiver can copy this file as is.

Plum sends `Plum-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]` where each v1 is
HMAC-SHA256(secret, f"{t}.{raw body}"). During a secret rotation's grace period there are two
v1 values (new and previous secret); a receiver holding either secret verifies. Check the
signature over the raw request body bytes, before parsing the JSON, and de-duplicate on
`Plum-Event-Id`.

    from plum.webhooks_verify import verify, WebhookVerificationError
    try:
        verify(request.body, request.headers["Plum-Signature"], secret="whsec_...")
    except WebhookVerificationError:
        return 400
"""

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """The signature header is missing, malformed, too old, or matches no secret."""


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The hex v1 signature of `body` sent at `timestamp` (what Plum computes)."""
    signed = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def parse_header(header: str) -> tuple[int, list[str]]:
    timestamp = None
    signatures = []
    for item in (header or "").split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookVerificationError("Malformed Plum-Signature header.")
    return timestamp, signatures


def verify(
    body: bytes,
    header: str,
    secret: str | list[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> int:
    """Raise WebhookVerificationError unless one v1 signature in `header` is `body` signed by
    (one of) `secret` and the timestamp is within `tolerance` seconds of now. Returns the
    timestamp. Comparisons are constant-time."""
    timestamp, signatures = parse_header(header)
    current = time.time() if now is None else now
    if tolerance and abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("Timestamp outside the tolerance (replayed or clock skew).")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    for candidate in secrets:
        expected = sign(body, candidate, timestamp)
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return timestamp
    raise WebhookVerificationError("No signature matches the secret.")


def is_valid(body: bytes, header: str, secret: str | list[str], **kwargs) -> bool:
    try:
        verify(body, header, secret, **kwargs)
    except WebhookVerificationError:
        return False
    return True
