"""Outbound webhook endpoints of API clients: create, update, rotate the signing secret, and
sign a delivery. Delivery itself (fan-out, attempts, retries, replay, auto-disable) lives in
`plum.services.deliveries`.

The signing secret is returned once (create, rotate) and stored encrypted: signing needs the
raw secret, so a hash would not do. During a rotation's grace period the previous secret signs
too, so a receiver can switch at its own pace."""

import ipaddress
import json
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from plum import event_catalog, secretbox
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import ApiClient, Delivery, WebhookEndpoint
from plum.services.audit import audit_log
from plum.webhooks_verify import sign

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_HEADER = "Plum-Signature"
ENDPOINT_FIELDS = ["url", "event_types", "description", "is_active"]


# --- validation shared with notification channels -------------------------------------------


def validate_target_url(url: str, *, field: str = "url") -> str:
    """https only, and no loopback / private address literal, outside development and tests
    (WEBHOOK_ALLOW_INSECURE_URLS)."""
    url = (url or "").strip()
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.WEBHOOK_ALLOW_INSECURE_URLS else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise InvalidInputError(fields={field: ["Enter an https:// URL."]})
    if len(url) > 500:
        raise InvalidInputError(fields={field: ["The URL is longer than 500 characters."]})
    if not settings.WEBHOOK_ALLOW_INSECURE_URLS:
        host = parts.hostname
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        if host == "localhost" or (address is not None and not address.is_global):
            raise InvalidInputError(fields={field: ["The URL must reach a public host."]})
    return url


def validate_event_types(event_types, *, field: str = "event_types") -> list[str]:
    if not isinstance(event_types, list | tuple) or not event_types:
        raise InvalidInputError(fields={field: ['Choose at least one event type, or "*".']})
    unknown = sorted(
        {t for t in event_types if t != event_catalog.ALL_EVENTS and not event_catalog.is_known(t)}
    )
    if unknown:
        raise InvalidInputError(fields={field: [f"Unknown event types: {', '.join(unknown)}."]})
    return sorted(set(event_types))


# --- endpoints ------------------------------------------------------------------------------


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _audit_per_programme(*, endpoint: WebhookEndpoint, actor: Actor, action: str, changes: dict):
    for programme_id in endpoint.client.programmes.values_list("pk", flat=True):
        audit_log(
            actor=actor, action=action, obj=endpoint, programme_id=programme_id, changes=changes
        )


def webhook_endpoint_create(
    *,
    client: ApiClient,
    url: str,
    event_types: list[str],
    actor: Actor,
    description: str = "",
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint and return it with its signing secret: the only time it is shown."""
    url = validate_target_url(url)
    event_types = validate_event_types(event_types)
    if client.revoked_at is not None:
        raise InvalidInputError("The API client is revoked.")
    secret = _new_secret()
    with transaction.atomic():
        endpoint = WebhookEndpoint.objects.create(
            client=client,
            url=url,
            description=description.strip()[:200],
            event_types=event_types,
            secret_encrypted=secretbox.encrypt(secret),
            secret_hint=secret[:10] + "…",
        )
        _audit_per_programme(
            endpoint=endpoint,
            actor=actor,
            action="webhook.endpoint.create",
            changes={"url": [None, url], "event_types": [None, event_types]},
        )
    return endpoint, secret


def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, actor: Actor, data: dict
) -> WebhookEndpoint:
    """Change url, event types, description or active flag. Re-activating clears the run of
    failures that disabled it."""
    unknown = sorted(set(data) - set(ENDPOINT_FIELDS))
    if unknown:
        raise InvalidInputError(fields={name: ["Unknown field."] for name in unknown})
    clean = dict(data)
    if "url" in clean:
        clean["url"] = validate_target_url(clean["url"])
    if "event_types" in clean:
        clean["event_types"] = validate_event_types(clean["event_types"])
    if "description" in clean:
        clean["description"] = str(clean["description"]).strip()[:200]
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        changes = {}
        for name, value in clean.items():
            if getattr(current, name) != value:
                changes[name] = [getattr(current, name), value]
                setattr(current, name, value)
        fields = list(changes)
        if changes.get("is_active") == [False, True]:
            current.consecutive_failures = 0
            current.disabled_at = None
            current.disabled_reason = ""
            fields += ["consecutive_failures", "disabled_at", "disabled_reason"]
        if fields:
            current.save(update_fields=fields)
            _audit_per_programme(
                endpoint=current, actor=actor, action="webhook.endpoint.update", changes=changes
            )
    return current


def webhook_endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, actor: Actor, grace: timedelta | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret signs from now on; the current one keeps signing (a second v1) until the
    grace period ends. Returns the new secret: the only time it is shown."""
    grace = settings.WEBHOOK_SECRET_GRACE if grace is None else grace
    secret = _new_secret()
    with transaction.atomic():
        current = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        current.previous_secret_encrypted = current.secret_encrypted if grace else ""
        current.previous_secret_expires_at = timezone.now() + grace if grace else None
        current.secret_encrypted = secretbox.encrypt(secret)
        before = current.secret_hint
        current.secret_hint = secret[:10] + "…"
        current.save(
            update_fields=[
                "previous_secret_encrypted",
                "previous_secret_expires_at",
                "secret_encrypted",
                "secret_hint",
            ]
        )
        _audit_per_programme(
            endpoint=current,
            actor=actor,
            action="webhook.endpoint.rotate_secret",
            changes={
                "secret_hint": [before, current.secret_hint],
                "previous_secret_expires_at": [None, current.previous_secret_expires_at],
            },
        )
    return current, secret


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its grace."""
    now = now or timezone.now()
    found = [secretbox.decrypt(endpoint.secret_encrypted)]
    if endpoint.previous_secret_encrypted and endpoint.previous_secret_expires_at > now:
        found.append(secretbox.decrypt(endpoint.previous_secret_encrypted))
    return found


# --- one delivery's request -----------------------------------------------------------------


def event_envelope(delivery: Delivery) -> dict:
    event = delivery.event
    return {
        "id": str(event.pk),
        "type": event.payload["type"],
        "occurred_at": event.payload["occurred_at"],
        "programme": {"id": delivery.programme_id, "slug": delivery.programme.slug},
        "data": event.payload["data"],
    }


def envelope_body(delivery: Delivery) -> bytes:
    """The same bytes on every attempt and replay: only the signature's timestamp changes."""
    return json.dumps(event_envelope(delivery), separators=(",", ":"), sort_keys=True).encode()


def signature_header(body: bytes, secrets_: list[str], timestamp: int) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={sign(body, s, timestamp)}" for s in secrets_)])


def webhook_request(delivery: Delivery) -> tuple[str, bytes, dict]:
    endpoint = delivery.endpoint
    body = envelope_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Plum-Webhooks/1.0",
        "Plum-Event-Id": str(delivery.event_id),
        "Plum-Event-Type": delivery.event_type,
        "Plum-Delivery-Id": str(delivery.pk),
        SIGNATURE_HEADER: signature_header(body, signing_secrets(endpoint), timestamp),
    }
    return endpoint.url, body, headers
