"""Domain events (`voucher.generated`, `campaign.paused`, …): written to the outbox in the
transaction of the change that caused them, then fanned out to subscribers (Slack and Teams
channels and webhook endpoints: `plum.services.deliveries`). With no subscriber the event is
still kept in the outbox, as the record of what happened.

Every type is listed, with its payload schema, in `plum.event_catalog`; with
PLUM_STRICT_EVENTS (DEBUG and tests) an unknown type or a payload missing a required field is
refused, so the catalogue cannot drift from the code."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import connection
from django.utils import timezone

from plum import event_catalog
from plum.models import EventOnce, OutboxMessage
from plum.services.outbox import outbox_enqueue, outbox_enqueue_many

logger = logging.getLogger(__name__)

EVENT_KIND = "event"
Subscriber = Callable[[OutboxMessage], None]
_subscribers: list[Subscriber] = []


class UnknownEventTypeError(ValueError):
    """An event type missing from plum.event_catalog, or a payload short of its schema."""


def subscribe(subscriber: Subscriber) -> Subscriber:
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def subscribers() -> list[Subscriber]:
    return list(_subscribers)


def _check(event_type: str, data: dict) -> None:
    if not event_catalog.is_known(event_type):
        problem = f"Event type {event_type!r} is not in plum.event_catalog"
    else:
        missing = event_catalog.missing_fields(event_type, data)
        if not missing:
            return
        problem = f"Event {event_type!r} lacks required fields {missing}"
    if settings.PLUM_STRICT_EVENTS:
        raise UnknownEventTypeError(problem)
    logger.error("%s; emitted anyway", problem)


def event_emit(*, event_type: str, programme_id: int | None, data: dict) -> OutboxMessage:
    """Call inside the transaction that made the change."""
    _check(event_type, data)
    return outbox_enqueue(
        kind=EVENT_KIND,
        programme_id=programme_id,
        payload={"type": event_type, "occurred_at": timezone.now().isoformat(), "data": data},
    )


def event_emit_many(*, event_type: str, events: list[tuple[int | None, dict]]) -> list:
    """`event_emit` for many events of one type, in one INSERT: (programme_id, data) pairs.
    For set-based services, whose statement count must not grow with their rows."""
    for _, data in events:
        _check(event_type, data)
    occurred_at = timezone.now().isoformat()
    return outbox_enqueue_many(
        kind=EVENT_KIND,
        messages=[
            ({"type": event_type, "occurred_at": occurred_at, "data": data}, programme_id)
            for programme_id, data in events
        ],
    )


def events_emit(*, events: list[tuple[str, int | None, dict]]) -> list:
    """`event_emit` for a few events of different types caused by one change, in one INSERT:
    (event_type, programme_id, data) triples, in the order given."""
    for event_type, _, data in events:
        _check(event_type, data)
    occurred_at = timezone.now().isoformat()
    return outbox_enqueue_many(
        kind=EVENT_KIND,
        messages=[
            ({"type": event_type, "occurred_at": occurred_at, "data": data}, programme_id)
            for event_type, programme_id, data in events
        ],
    )


def event_emit_once(
    *, key: str, event_type: str, programme_id: int | None, data: dict
) -> OutboxMessage | None:
    """Emit the event unless `key` already fired. The key row is inserted ON CONFLICT DO
    NOTHING in the caller's transaction: of two parallel transactions the second waits for the
    first and, if it commits, inserts nothing; if it rolls back, the second fires instead."""
    _check(event_type, data)
    table, column = (connection.ops.quote_name(n) for n in (EventOnce._meta.db_table, "key"))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({column}, created_at) VALUES (%s, %s) "  # noqa: S608
            f"ON CONFLICT ({column}) DO NOTHING RETURNING {column}",
            [key, timezone.now()],
        )
        inserted = cursor.fetchone() is not None
    if not inserted:
        return None
    return event_emit(event_type=event_type, programme_id=programme_id, data=data)
