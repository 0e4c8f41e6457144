"""The outbox: everything that leaves the system is a row written in the transaction that
caused it, then delivered by a Celery task enqueued on commit, or by the sweeper when the
broker was unreachable at commit time.

Delivery holds the message's row lock (`FOR UPDATE SKIP LOCKED`) while it sends, so a message
is sent by one worker at a time; the message id travels as the provider's idempotency key, so a
crash between sending and committing causes at most a duplicate the provider can drop."""

import logging
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from uuid import UUID, uuid4

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from plum import sql as raw
from plum.models import OutboxMessage

logger = logging.getLogger(__name__)


class TransientSendError(Exception):
    """Worth retrying: timeouts, connection errors, 5xx, 429. `final` says the sender's own
    retry window has closed: the message is dead now, whatever attempts it has left."""

    def __init__(self, message: str, *, retry_after: float | None = None, final: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.final = final


class PermanentSendError(Exception):
    """Retrying cannot help: invalid number, hard bounce, 4xx. A person must correct it."""


Sender = Callable[[OutboxMessage], None]
FailureHook = Callable[[OutboxMessage], None]
_senders: dict[str, Sender] = {}
_failure_hooks: dict[str, FailureHook] = {}


def register_sender(kind: str, *, on_failure: FailureHook | None = None):
    """Register the function that delivers messages of `kind`. `on_failure` runs in the
    delivering transaction when a message ends failed or dead (e.g. to flag a delivery)."""

    def decorator(func: Sender) -> Sender:
        _senders[kind] = func
        if on_failure is not None:
            _failure_hooks[kind] = on_failure
        return func

    return decorator


def sender_for(kind: str) -> Sender | None:
    return _senders.get(kind)


def outbox_enqueue(
    *, kind: str, payload: dict, programme_id: int | None = None, max_attempts: int | None = None
) -> OutboxMessage:
    """Write a message in the caller's transaction and schedule its delivery on commit."""
    if kind not in _senders:
        raise ValueError(f"No outbox sender is registered for {kind!r}")
    message = OutboxMessage(
        id=uuid4(),
        kind=kind,
        payload=payload,
        programme_id=programme_id,
        next_attempt_at=timezone.now(),
        max_attempts=max_attempts or settings.OUTBOX_MAX_ATTEMPTS,
    )
    _insert([message])
    _publish_on_commit([message.pk])
    return message


def outbox_enqueue_many(
    *, kind: str, messages: list[tuple[dict, int | None]], max_attempts: int | None = None
) -> list[OutboxMessage]:
    """`outbox_enqueue` for many messages in one INSERT: (payload, programme_id) pairs. The
    ids are drawn here, so the caller can point its own rows at them in the same
    transaction."""
    if kind not in _senders:
        raise ValueError(f"No outbox sender is registered for {kind!r}")
    now = timezone.now()
    rows = [
        raw.new(
            OutboxMessage,
            id=uuid4(),
            kind=kind,
            payload=payload,
            programme_id=programme_id,
            next_attempt_at=now,
            max_attempts=max_attempts or settings.OUTBOX_MAX_ATTEMPTS,
        )
        for payload, programme_id in messages
    ]
    _insert(rows, now=now)
    _publish_on_commit([row.pk for row in rows])
    return rows


def _insert(rows: list, now=None) -> None:
    conn = transaction.get_connection()
    batch = getattr(conn, "_plum_outbox_batch", None)
    if batch is not None and batch[0] == _savepoints(conn):
        batch[1].extend(rows)  # written at the end of the outbox_batch block
        return
    raw.rows_insert_keyed(rows, now=now)


def _savepoints(conn) -> list:
    # An atomic block without a savepoint stands in the list as None.
    return [sid for sid in conn.savepoint_ids if sid is not None]


@contextmanager
def outbox_batch():
    """Inside the block, the messages `outbox_enqueue` and `outbox_enqueue_many` write are
    inserted in one INSERT when the block ends without an error (in the order written), instead
    of one INSERT per call. Their ids are drawn at once, so rows written in the block may point
    at them (foreign keys to the outbox are checked at commit). Use it inside the transaction
    that causes the messages; nothing inside the block may read them back. A message written
    inside a savepoint opened in the block is inserted at once, as without the block. Nested
    blocks join the outermost one."""
    conn = transaction.get_connection()
    if getattr(conn, "_plum_outbox_batch", None) is not None:
        yield
        return
    rows: list[OutboxMessage] = []
    conn._plum_outbox_batch = (_savepoints(conn), rows)
    try:
        yield
    finally:
        conn._plum_outbox_batch = None
    raw.rows_insert_keyed(rows)


class _Publish:
    """The on-commit publish of the messages one transaction wrote: a few go in one delivery
    task, more than SWEEP_KICK_ABOVE are kicked by sweeps (one per OUTBOX_SWEEP_BATCH), not a
    task each. Publishing costs about a millisecond of CPU, so every message a transaction
    writes (an order's events and its delivery's message) joins the one publish registered
    first, instead of each call publishing its own."""

    def __init__(self, savepoints: set):
        self.ids: list = []
        self.savepoints = savepoints
        self.done = False

    def __call__(self) -> None:
        self.done = True
        ids = self.ids
        if len(ids) > SWEEP_KICK_ABOVE:
            outbox_schedule_sweeps(len(ids))
        elif ids:
            _schedule_delivery(*ids)


def _publish_on_commit(ids: list) -> None:
    """Publish `ids` after the current transaction commits, in the publish it already has
    pending when there is one. That one must still be pending (not run, not dropped by a
    savepoint rollback) and registered outside no savepoint we are not inside: then whatever
    rollback drops it also drops the messages written here. An id whose message was rolled
    back anyway (a savepoint inside ours) is published for nothing: delivering a message that
    is not there does nothing. Anything not published is the periodic sweeper's."""
    if not ids:
        return
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        publish = _Publish(set())
        publish.ids.extend(ids)
        publish()
        return
    pending = getattr(conn, "_plum_outbox_publish", None)
    if (
        pending is not None
        and not pending.done
        and pending.savepoints <= set(conn.savepoint_ids) - {None}
        and any(hook is pending for _, hook, _ in conn.run_on_commit)
    ):
        pending.ids.extend(ids)
        return
    pending = _Publish(set(conn.savepoint_ids) - {None})
    pending.ids.extend(ids)
    conn._plum_outbox_publish = pending
    transaction.on_commit(pending)


# Above this many messages in one call, `outbox_enqueue_many` kicks sweeps instead of one
# delivery task per message.
SWEEP_KICK_ABOVE = 20


def outbox_schedule_sweeps(count: int) -> None:
    """After commit: `count` new messages delivered by outbox sweeps (one per sweep batch of
    messages) rather than one task per message; the periodic sweeper is the safety net, as for
    every outbox message."""
    global _broker_down_until
    from plum.tasks import outbox_sweep_task

    if time.monotonic() < _broker_down_until:
        logger.warning("Broker unavailable; %s outbox messages left to the sweeper", count)
        return
    for _ in range(-(-count // settings.OUTBOX_SWEEP_BATCH)):
        try:
            outbox_sweep_task.apply_async(retry=False)
        except Exception:  # noqa: BLE001 - any broker failure: the periodic sweeper delivers
            _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER_SECONDS
            logger.warning("Broker unavailable; %s outbox messages left to the sweeper", count)
            return


# After a failed publish this process leaves messages to the sweeper for a few seconds instead
# of trying the broker again for each: a burst of commits must not each wait on a dead broker.
BROKER_RETRY_AFTER_SECONDS = 5.0
_broker_down_until = 0.0


def _schedule_delivery(message_id: UUID, *more: UUID) -> None:
    """One delivery task for the message (or, given more, one task for all of them)."""
    global _broker_down_until
    from plum.tasks import outbox_deliver_task

    if time.monotonic() < _broker_down_until:
        logger.warning("Broker unavailable; outbox message %s left to the sweeper", message_id)
        return
    try:
        outbox_deliver_task.apply_async(args=[str(pk) for pk in (message_id, *more)], retry=False)
    except Exception:  # noqa: BLE001 - any broker failure: the sweeper delivers it later
        _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER_SECONDS
        logger.warning("Broker unavailable; outbox message %s left to the sweeper", message_id)


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    base = settings.OUTBOX_BACKOFF_BASE_SECONDS
    cap = settings.OUTBOX_BACKOFF_MAX_SECONDS
    ceiling = min(cap, base * (2 ** max(attempts - 1, 0)))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def outbox_deliver(*, message_id: UUID | str) -> OutboxMessage | None:
    """Deliver one due message if no other worker holds it. Safe to call any number of times:
    a sent, failed or dead message, or one that is not due yet, is left alone."""
    with transaction.atomic(durable=True):
        message = (
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(pk=message_id, status=OutboxMessage.Status.PENDING)
            .filter(next_attempt_at__lte=timezone.now())
            .first()
        )
        if message is None:
            return None
        _attempt(message)
        return message


def _attempt(message: OutboxMessage) -> None:
    sender = _senders.get(message.kind)
    message.attempts += 1
    now = timezone.now()
    try:
        if sender is None:
            raise PermanentSendError(f"No sender registered for {message.kind!r}")
        sender(message)
    except PermanentSendError as exc:
        message.status = OutboxMessage.Status.FAILED
        message.last_error = str(exc)[:2000]
    except Exception as exc:  # noqa: BLE001 - anything unexpected is retried as transient
        message.last_error = f"{type(exc).__name__}: {exc}"[:2000]
        if message.attempts >= message.max_attempts or getattr(exc, "final", False):
            message.status = OutboxMessage.Status.DEAD
        else:
            delay = backoff_seconds(message.attempts)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after:
                delay = max(delay, float(retry_after))
            message.next_attempt_at = now + timedelta(seconds=delay)
    else:
        message.status = OutboxMessage.Status.SENT
        message.sent_at = now
        message.last_error = ""
    message.save(update_fields=["attempts", "status", "last_error", "next_attempt_at", "sent_at"])
    if message.status in (OutboxMessage.Status.FAILED, OutboxMessage.Status.DEAD):
        hook = _failure_hooks.get(message.kind)
        if hook is not None:
            hook(message)


def outbox_sweep(*, limit: int | None = None) -> int:
    """Deliver due pending messages one short transaction each, skipping any a worker holds.
    Returns how many were attempted."""
    limit = limit or settings.OUTBOX_SWEEP_BATCH
    attempted = 0
    seen: set[UUID] = set()
    while attempted < limit:
        with transaction.atomic(durable=True):
            message = (
                OutboxMessage.objects.select_for_update(skip_locked=True)
                .filter(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=timezone.now())
                .exclude(pk__in=seen)
                .order_by("next_attempt_at")
                .first()
            )
            if message is None:
                break
            seen.add(message.pk)
            _attempt(message)
            attempted += 1
    return attempted


def outbox_retry(*, message: OutboxMessage, actor) -> bool:
    """Make a failed or dead message due again, after a person corrected the cause. Audited."""
    from plum.services.audit import audit_log

    with transaction.atomic(durable=True):
        updated = OutboxMessage.objects.filter(
            pk=message.pk,
            status__in=[OutboxMessage.Status.FAILED, OutboxMessage.Status.DEAD],
        ).update(status=OutboxMessage.Status.PENDING, attempts=0, next_attempt_at=timezone.now())
        if updated:
            audit_log(
                actor=actor,
                action="outbox.retry",
                obj=message,
                changes={"status": [message.status, OutboxMessage.Status.PENDING]},
            )
            _publish_on_commit([message.pk])
    return bool(updated)
