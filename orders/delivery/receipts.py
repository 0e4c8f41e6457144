"""Signed delivery receipts from providers: HMAC-SHA256 over "{timestamp}.{raw body}" with the
provider's secret (settings.PLUM_DELIVERY_RECEIPT_SECRETS), hex-encoded, sent as

    X-Plum-Timestamp: 1764633600
    X-Plum-Signature: sha256=<hex>

A timestamp further than PLUM_DELIVERY_RECEIPT_TOLERANCE_SECONDS from now is refused, so a
captured receipt cannot be replayed later; comparison is constant-time."""

import hashlib
import hmac
import time

from django.conf import settings


class ReceiptSignatureMissingError(Exception):
    pass


class ReceiptSignatureInvalidError(Exception):
    pass


def receipt_secret(provider: str) -> str | None:
    return (getattr(settings, "PLUM_DELIVERY_RECEIPT_SECRETS", None) or {}).get(provider) or None


def receipt_sign(*, secret: str, timestamp: int | str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def receipt_verify(
    *, secret: str, timestamp: str | None, signature: str | None, body: bytes, now=None
) -> None:
    """Raises ReceiptSignatureMissingError (no headers) or ReceiptSignatureInvalidError
    (stale, malformed or wrong); returns None for a good signature."""
    if not timestamp or not signature:
        raise ReceiptSignatureMissingError()
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise ReceiptSignatureInvalidError("malformed timestamp") from exc
    now = time.time() if now is None else now
    if abs(now - sent) > settings.PLUM_DELIVERY_RECEIPT_TOLERANCE_SECONDS:
        raise ReceiptSignatureInvalidError("timestamp outside the tolerance")
    expected = receipt_sign(secret=secret, timestamp=timestamp, body=body)
    given = signature if signature.startswith("sha256=") else f"sha256={signature}"
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise ReceiptSignatureInvalidError("signature mismatch")
