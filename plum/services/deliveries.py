"""Deliveries of domain events to Slack/Teams channels and webhook endpoints.

Fan-out: the outbox's "event" sender calls `deliveries_fan_out` inside the transaction that
holds the event's row lock and marks it sent, so an event is fanned out once; each (event,
target) pair is one `Delivery` row (unique), with its own outbox message of kind
"notification" or "webhook" — one slow receiver never holds back the others, and each is
retried with the outbox's exponential backoff until its retry window (24 h) closes, then dead.

Every attempt is logged (`DeliveryAttempt`: status code, latency, response excerpt). A run of
WEBHOOK_DISABLE_AFTER_FAILURES consecutive failed attempts disables the channel or endpoint
(one conditional UPDATE, so it happens once), audits it and emits an event the programme's
channels receive. Failed and dead deliveries can be replayed: same event id, new attempts."""

import http.client
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from plum.actors import SYSTEM, Actor
from plum.errors import PlumError
from plum.models import (
    Delivery,
    DeliveryAttempt,
    NotificationChannel,
    OutboxMessage,
    WebhookEndpoint,
)
from plum.services.audit import audit_log
from plum.services.events import event_emit
from plum.services.notifications import channel_request
from plum.services.outbox import PermanentSendError, TransientSendError, outbox_enqueue
from plum.services.webhooks import webhook_request

logger = logging.getLogger(__name__)

NOTIFICATION_KIND = "notification"
WEBHOOK_KIND = "webhook"
EXCERPT_CHARS = 1000
S = Delivery.Status


class DeliveryNotReplayableError(PlumError):
    code = "delivery_not_replayable"
    status = 409
    message = "Only failed or dead deliveries can be replayed."


class DeliveryTargetInactiveError(PlumError):
    code = "delivery_target_inactive"
    status = 409
    message = "The channel or endpoint is disabled; enable it before replaying."


# --- fan-out --------------------------------------------------------------------------------


def _targets_for(event: OutboxMessage) -> tuple[list[NotificationChannel], list[WebhookEndpoint]]:
    event_type = event.payload.get("type", "")
    is_test = bool(event.payload.get("data", {}).get("is_test", False))
    channels = [
        channel
        for channel in NotificationChannel.objects.filter(
            programme_id=event.programme_id, is_active=True
        )
        if channel.wants(event_type)
    ]
    # An API client sees only events of its programmes, and a test client only test data.
    endpoints = [
        endpoint
        for endpoint in WebhookEndpoint.objects.filter(
            is_active=True,
            client__revoked_at__isnull=True,
            client__is_test=is_test,
            client__programmes=event.programme_id,
        ).distinct()
        if endpoint.wants(event_type)
    ]
    return channels, endpoints


def deliveries_fan_out(event: OutboxMessage) -> int:
    """Create the deliveries of one event (the event sender's subscriber). Runs in the event's
    delivering transaction; a savepoint keeps a failure here from leaving half a fan-out, and
    the unique (event, target) rows make a second run add only what is missing."""
    if event.programme_id is None:
        return 0
    channels, endpoints = _targets_for(event)
    if not channels and not endpoints:
        return 0
    created = 0
    expires_at = timezone.now() + settings.WEBHOOK_RETRY_WINDOW
    with transaction.atomic():
        done = set(Delivery.objects.filter(event=event).values_list("channel_id", "endpoint_id"))
        pairs = [(c, None) for c in channels if (c.pk, None) not in done]
        pairs += [(None, e) for e in endpoints if (None, e.pk) not in done]
        for channel, endpoint in pairs:
            delivery = Delivery(
                event=event,
                event_type=event.payload["type"],
                programme_id=event.programme_id,
                channel=channel,
                endpoint=endpoint,
                expires_at=expires_at,
            )
            delivery.message = _enqueue(delivery)
            delivery.save(force_insert=True)
            created += 1
    return created


def _enqueue(delivery: Delivery) -> OutboxMessage:
    return outbox_enqueue(
        kind=WEBHOOK_KIND if delivery.endpoint_id else NOTIFICATION_KIND,
        payload={"delivery_id": str(delivery.pk)},
        programme_id=delivery.programme_id,
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
    )


# --- one attempt ----------------------------------------------------------------------------


@dataclass
class HttpOutcome:
    status: int | None
    excerpt: str
    error: str
    latency_ms: int
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in (408, 425, 429) or self.status >= 500


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 3xx is the receiver's answer, not a place to re-post the event


_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def http_post(url: str, body: bytes, headers: dict, *, timeout: float) -> HttpOutcome:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    started = time.monotonic()
    status, excerpt, error, retry_after = None, b"", "", None
    try:
        with _opener.open(request, timeout=timeout) as response:
            status = response.status
            excerpt = response.read(EXCERPT_CHARS)
    except urllib.error.HTTPError as exc:
        status = exc.code
        retry_after = _retry_after(exc.headers.get("Retry-After"))
        try:
            excerpt = exc.read(EXCERPT_CHARS)
        except (OSError, http.client.HTTPException):
            excerpt = b""
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        error = f"{type(reason).__name__}: {reason}"[:500]
    latency = int((time.monotonic() - started) * 1000)
    text = excerpt.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return HttpOutcome(status, text, error, latency, retry_after)


def _load(message: OutboxMessage) -> Delivery:
    return Delivery.objects.select_related(
        "event", "programme", "channel", "endpoint", "endpoint__client"
    ).get(pk=message.payload["delivery_id"])


def delivery_send(message: OutboxMessage) -> None:
    """The outbox sender of "notification" and "webhook" messages: one HTTP attempt, logged.
    Raises TransientSendError to be retried (final once the window closed) or
    PermanentSendError for a 4xx or a disabled target."""
    delivery = _load(message)
    if delivery.status == S.SUCCEEDED:
        return
    target = delivery.target
    revoked = delivery.endpoint_id and delivery.endpoint.client.revoked_at is not None
    if not target.is_active or revoked:
        delivery.status = S.FAILED
        delivery.last_error = "The channel or endpoint is disabled."
        delivery.save(update_fields=["status", "last_error"])
        raise PermanentSendError(delivery.last_error)
    if delivery.endpoint_id:
        url, body, headers = webhook_request(delivery)
    else:
        url, body, headers = channel_request(delivery)
    now = timezone.now()
    outcome = http_post(url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
    DeliveryAttempt.objects.create(
        delivery=delivery,
        attempted_at=now,
        succeeded=outcome.ok,
        status_code=outcome.status,
        latency_ms=outcome.latency_ms,
        error=outcome.error,
        response_excerpt=outcome.excerpt,
    )
    delivery.attempts += 1
    delivery.last_status_code = outcome.status
    delivery.last_error = outcome.error or ("" if outcome.ok else f"HTTP {outcome.status}")
    fields = ["attempts", "last_status_code", "last_error", "status", "delivered_at"]
    if outcome.ok:
        delivery.status = S.SUCCEEDED
        delivery.delivered_at = now
        delivery.save(update_fields=fields)
        type(target).objects.filter(pk=target.pk, consecutive_failures__gt=0).update(
            consecutive_failures=0
        )
        return
    _count_failure(target)
    if not outcome.transient:
        delivery.status = S.FAILED
        delivery.save(update_fields=fields)
        raise PermanentSendError(f"{delivery.last_error}: {outcome.excerpt[:200]}")
    final = now >= delivery.expires_at or message.attempts >= message.max_attempts
    if final:
        delivery.status = S.DEAD
    delivery.save(update_fields=fields)
    raise TransientSendError(delivery.last_error, retry_after=outcome.retry_after, final=final)


def delivery_on_failure(message: OutboxMessage) -> None:
    """The outbox gave up on a message (failed or dead) for a reason the sender did not record
    (an unexpected error): the delivery says so too."""
    status = S.DEAD if message.status == OutboxMessage.Status.DEAD else S.FAILED
    Delivery.objects.filter(pk=message.payload.get("delivery_id"), status=S.PENDING).update(
        status=status, last_error=message.last_error[:2000]
    )


def _count_failure(target: NotificationChannel | WebhookEndpoint) -> None:
    """One more consecutive failure; at the threshold, disable the target once (conditional
    UPDATE on is_active), audit it and tell the programme."""
    model = type(target)
    model.objects.filter(pk=target.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    threshold = settings.WEBHOOK_DISABLE_AFTER_FAILURES
    reason = f"Disabled after {threshold} consecutive failed deliveries."
    disabled = model.objects.filter(
        pk=target.pk, is_active=True, consecutive_failures__gte=threshold
    ).update(is_active=False, disabled_at=timezone.now(), disabled_reason=reason)
    if not disabled:
        return
    target.refresh_from_db()
    if isinstance(target, WebhookEndpoint):
        programme_ids = list(target.client.programmes.values_list("pk", flat=True))
        event_type = "webhook.endpoint_disabled"
        data = {
            "endpoint_id": target.pk,
            "url": target.url,
            "failures": target.consecutive_failures,
            "api_client": target.client.name,
        }
    else:
        programme_ids = [target.programme_id]
        event_type = "notification.channel_disabled"
        data = {
            "channel_id": target.pk,
            "name": target.name,
            "kind": target.kind,
            "failures": target.consecutive_failures,
        }
    for programme_id in programme_ids:
        audit_log(
            actor=SYSTEM,
            action=f"{model._meta.model_name}.auto_disable",
            obj=target,
            programme_id=programme_id,
            changes={"is_active": [True, False], "disabled_reason": ["", reason]},
        )
        event_emit(event_type=event_type, programme_id=programme_id, data=data)
    logger.warning("%s %s auto-disabled: %s", model.__name__, target.pk, reason)


# --- replay ---------------------------------------------------------------------------------


def _replay(delivery: Delivery, now) -> None:
    """Inside a transaction, with the delivery locked and replayable."""
    delivery.status = S.PENDING
    delivery.expires_at = now + settings.WEBHOOK_RETRY_WINDOW
    delivery.replays += 1
    delivery.message = _enqueue(delivery)
    delivery.save(update_fields=["status", "expires_at", "replays", "message"])


def delivery_replay(*, delivery: Delivery, actor: Actor) -> Delivery:
    """Send a failed or dead delivery again: same event id (receivers de-duplicate on it), new
    attempts, a new retry window. Audited."""
    with transaction.atomic(durable=True):
        current = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("channel", "endpoint", "event", "programme")
            .get(pk=delivery.pk)
        )
        if current.status not in (S.FAILED, S.DEAD):
            raise DeliveryNotReplayableError()
        if not current.target.is_active:
            raise DeliveryTargetInactiveError()
        before = current.status
        _replay(current, timezone.now())
        audit_log(
            actor=actor,
            action="delivery.replay",
            obj=current,
            changes={"status": [before, S.PENDING]},
        )
    return current


def deliveries_replay_failed(*, target: NotificationChannel | WebhookEndpoint, actor: Actor) -> int:
    """Replay every failed or dead delivery of a channel or endpoint, in one transaction, one
    audit event naming how many. Returns that number."""
    field = "endpoint" if isinstance(target, WebhookEndpoint) else "channel"
    with transaction.atomic(durable=True):
        current = type(target).objects.select_for_update().get(pk=target.pk)
        if not current.is_active:
            raise DeliveryTargetInactiveError()
        failed = list(
            Delivery.objects.select_for_update()
            .filter(**{field: current}, status__in=[S.FAILED, S.DEAD])
            .order_by("created_at", "id")
        )
        now = timezone.now()
        for delivery in failed:
            _replay(delivery, now)
        if failed:
            programme_ids = sorted({d.programme_id for d in failed})
            for programme_id in programme_ids:
                audit_log(
                    actor=actor,
                    action="delivery.replay_failed",
                    obj=current,
                    programme_id=programme_id,
                    changes={
                        "deliveries": [None, [str(d.pk) for d in failed][:1000]],
                        "count": [None, len(failed)],
                    },
                )
    return len(failed)
