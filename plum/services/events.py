"""Domain events (`voucher.generated`, `campaign.paused`, …): written to the outbox in the
transaction of the change that caused them, then fanned out to subscribers (Slack, Teams and
webhooks register as subscribers in the notifications issue). With no subscriber the event is
still kept in the outbox, as the record of what happened."""

from collections.abc import Callable

from django.utils import timezone

from plum.models import OutboxMessage
from plum.services.outbox import outbox_enqueue

EVENT_KIND = "event"
Subscriber = Callable[[OutboxMessage], None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    _subscribers.append(subscriber)
    return subscriber


def subscribers() -> list[Subscriber]:
    return list(_subscribers)


def event_emit(*, event_type: str, programme_id: int | None, data: dict) -> OutboxMessage:
    """Call inside the transaction that made the change."""
    return outbox_enqueue(
        kind=EVENT_KIND,
        programme_id=programme_id,
        payload={"type": event_type, "occurred_at": timezone.now().isoformat(), "data": data},
    )
