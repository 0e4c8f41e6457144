"""Deliveries: sending a completed order's voucher to its member, riding on the outbox.

- `deliveries_queue` writes, set-based, one Delivery and one outbox message (kind "delivery")
  per completed order, in the caller's transaction (the one that completed the orders). An order
  whose member has no address for the channel gets a failed delivery (missing_contact) at once.
- The outbox delivers the message (`delivery_send`, registered as its sender): each attempt is
  a DeliveryAttempt; success marks the delivery delivered; a transient failure leaves it
  processing and the outbox retries with backoff and jitter (Retry-After honoured); a permanent
  failure marks it failed with the reason at once; attempts running out (outbox "dead") mark it
  failed with reason retries_exhausted. Every failure emits `delivery.failed`.
- `delivery_resend` corrects the member's contact details (member_upsert, audited) and sends a
  new delivery to the corrected address; `delivery_receipt_record` applies a provider's receipt.
- Order.delivery_status always equals the status of the order's latest delivery.

Lock order (with orders.services.issuance): the order row, then the delivery row. The sender
and the receipt lock the order first although they only update its delivery_status: a resend
holds the order and inserts a delivery, and the one-open-delivery unique index makes that insert
wait for a sender that is finishing, so the reverse order could deadlock."""

from json.encoder import encode_basestring_ascii as _quote
from time import monotonic
from uuid import uuid4
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.template.loader import select_template
from django.utils import timezone

from orders.delivery import (
    DeliveryTransientError,
    OutgoingMessage,
    backend_for,
)
from orders.errors import (
    DeliveryContactMissingError,
    DeliveryInProgressError,
    OrderNotDeliverableError,
    RecipientInvalidError,
)
from orders.models import DELIVERY_TRANSITIONS, Delivery, DeliveryAttempt, Order
from plum.actors import Actor, SystemActor, client_label
from plum.bulk import Same, columns_insert, instance_for, rows_insert
from plum.errors import InvalidInputError
from plum.models import ApiClient, Channel, Member, OutboxMessage
from plum.services.audit import audit_log
from plum.services.events import event_emit, event_emit_many
from plum.services.outbox import (
    SWEEP_KICK_ABOVE,
    PermanentSendError,
    TransientSendError,
    outbox_enqueue_many,
    outbox_schedule_sweeps,
    register_sender,
)
from plum.services.programmes import member_upsert

DELIVERY_KIND = "delivery"
OPEN = (Delivery.Status.PENDING, Delivery.Status.PROCESSING)
CONTACT_FIELDS = ("name", "email", "phone", "country")
TEMPLATE_DIR = "orders/delivery"


# --- choosing the channel and the address ------------------------------------------------------


def delivery_channel_for(*, order: Order) -> str:
    """The member's chosen channel, else the campaign's default, else the programme's."""
    return (
        order.member.preferred_channel
        or order.campaign.default_channel
        or order.programme.default_channel
        or Channel.EMAIL
    )


def delivery_destination(*, member: Member, channel: str) -> str:
    return (member.email if channel == Channel.EMAIL else member.phone) or ""


def _max_attempts() -> int:
    return getattr(settings, "PLUM_DELIVERY_MAX_ATTEMPTS", None) or settings.OUTBOX_MAX_ATTEMPTS


# --- queueing ----------------------------------------------------------------------------------


def _failed_event(delivery: Delivery, order: Order) -> None:
    event_emit(
        event_type="delivery.failed",
        programme_id=delivery.programme_id,
        data=_failed_data(delivery, order),
    )


def _failed_data(delivery: Delivery, order: Order) -> dict:
    return {
        "delivery_id": delivery.pk,
        "order_id": order.pk,
        "booking_id": order.booking_id,
        "campaign_id": delivery.campaign_id,
        "channel": delivery.channel,
        "reason": delivery.reason,
        "detail": delivery.reason_detail[:500],
        "is_resend": delivery.is_resend,
        "is_test": delivery.is_test,
    }


def _enqueue(sendable: list) -> list:
    """One outbox message of kind `delivery` per (order, channel, destination), in one INSERT."""
    return outbox_enqueue_many(
        kind=DELIVERY_KIND,
        messages=[
            ({"order_id": o.pk, "booking_id": o.booking_id, "channel": c}, o.programme_id)
            for o, c, _ in sendable
        ],
        max_attempts=_max_attempts(),
    )


def deliveries_queue(*, orders, actor: Actor, fresh: bool = False) -> list[Delivery]:
    """One delivery per completed order that has none yet, with its outbox message, in one
    INSERT each: call it inside the transaction that completed the orders (up to a few thousand
    at a time). Orders that are not completed, or already have their first delivery, are
    skipped, so calling it twice queues once (and `delivery_first_per_order` guarantees it).
    Orders whose member lacks the channel's address get a failed delivery (missing_contact).

    `fresh=True` says the orders were inserted completed by the caller's transaction, with
    member, campaign and programme loaded: they are used as given (no re-read, none can have a
    delivery yet), and each order's `delivery_status` is set in memory too, an UPDATE written
    only for the orders whose status differs from the one they were inserted with."""
    if fresh:
        rows = sorted((o for o in orders if o.status == Order.Status.COMPLETED), key=lambda o: o.pk)
        if not rows:
            return []
        return _deliveries_queue_fresh(rows, actor=actor)
    else:
        ids = sorted({order.pk for order in orders})
        if not ids:
            return []
        already = Delivery.objects.filter(order_id__in=ids, is_resend=False).values("order_id")
        rows = list(
            Order.objects.filter(pk__in=ids, status=Order.Status.COMPLETED)
            .exclude(pk__in=already)
            .select_related("member", "campaign", "programme")
            .order_by("pk")
        )
    sendable, missing = [], []
    for order in rows:
        channel = delivery_channel_for(order=order)
        destination = delivery_destination(member=order.member, channel=channel)
        (sendable if destination else missing).append((order, channel, destination))
    messages = _enqueue(sendable)
    now = timezone.now()
    deliveries = [
        Delivery(
            order=order,
            programme_id=order.programme_id,
            campaign_id=order.campaign_id,
            channel=channel,
            destination=destination,
            outbox_message=message,
            is_test=order.is_test,
        )
        for (order, channel, destination), message in zip(sendable, messages, strict=True)
    ]
    failed = [
        Delivery(
            order=order,
            programme_id=order.programme_id,
            campaign_id=order.campaign_id,
            channel=channel,
            status=Delivery.Status.FAILED,
            reason="missing_contact",
            reason_detail=(
                f"The member has no {'e-mail address' if channel == Channel.EMAIL else 'phone'}"
                f" for {channel}."
            ),
            failed_at=now,
            is_test=order.is_test,
        )
        for order, channel, _ in missing
    ]
    created = rows_insert(Delivery, [*deliveries, *failed], returning_pk=True)
    for status, group in (
        (Order.DeliveryStatus.PENDING, sendable),
        (Order.DeliveryStatus.FAILED, missing),
    ):
        stale = [o.pk for o, _, _ in group if not fresh or o.delivery_status != status]
        if stale:
            Order.objects.filter(pk__in=stale).update(delivery_status=status)
        for order, _, _ in group:
            order.delivery_status = status
    _queued_audit(created, actor=actor)
    if failed:
        event_emit_many(
            event_type="delivery.failed",
            events=[(d.programme_id, _failed_data(d, d.order)) for d in failed],
        )
    return created


_DELIVERY_NAMES = [f.attname for f in Delivery._meta.concrete_fields]


def _deliveries_queue_fresh(rows: list[Order], *, actor: Actor) -> list[Delivery]:
    """`deliveries_queue(fresh=True)` for orders the caller just inserted (sorted by id), built
    as columns, without a model instance per outbox message or delivery: the same rows, events,
    audit event and on-commit scheduling as the general path."""
    sendable, missing = [], []
    for order in rows:
        channel = delivery_channel_for(order=order)
        destination = delivery_destination(member=order.member, channel=channel)
        (sendable if destination else missing).append((order, channel, destination))
    count = len(sendable)
    if count > SWEEP_KICK_ABOVE:
        # What outbox_enqueue_many writes and schedules for this many messages, in columns.
        message_ids = [uuid4() for _ in range(count)]
        now = timezone.now()
        columns_insert(
            OutboxMessage,
            {
                "id": message_ids,
                "kind": Same(DELIVERY_KIND, count),
                "programme_id": [o.programme_id for o, _, _ in sendable],
                # {"order_id", "booking_id", "channel"} as JSON text (stored as jsonb)
                "payload": [
                    f'{{"order_id":{o.pk},"booking_id":{_quote(o.booking_id)},'
                    f'"channel":{_quote(c)}}}'
                    for o, c, _ in sendable
                ],
                "next_attempt_at": Same(now, count),
                "max_attempts": Same(_max_attempts(), count),
            },
            json_dumped=True,
        )
        transaction.on_commit(lambda: outbox_schedule_sweeps(count))
    else:
        messages = _enqueue(sendable)
        message_ids = [m.pk for m in messages]
    now = timezone.now()
    ordered = [*sendable, *missing]
    n = len(ordered)
    failed_detail = {
        channel: (
            f"The member has no {'e-mail address' if channel == Channel.EMAIL else 'phone'}"
            f" for {channel}."
        )
        for channel in Channel.values
    }
    k = len(sendable)
    columns = {
        "order_id": [o.pk for o, _, _ in ordered],
        "programme_id": [o.programme_id for o, _, _ in ordered],
        "campaign_id": [o.campaign_id for o, _, _ in ordered],
        "channel": [c for _, c, _ in ordered],
        "destination": [d for _, _, d in sendable] + [""] * (n - k),
        "status": [Delivery.Status.PENDING] * k + [Delivery.Status.FAILED] * (n - k),
        "outbox_message_id": [*message_ids, *([None] * (n - k))],
        "reason": [""] * k + ["missing_contact"] * (n - k),
        "reason_detail": [""] * k + [failed_detail[c] for _, c, _ in missing],
        "failed_at": [None] * k + [now] * (n - k),
        "is_test": [o.is_test for o, _, _ in ordered],
    }
    # Ids from RETURNING, in insertion order (as rows_insert reads them).
    columns["id"] = [row[0] for row in columns_insert(Delivery, columns, returning=("id",))]
    created = [
        instance_for(
            Delivery, {name: columns[name][i] for name in _DELIVERY_NAMES}, {"order": order}
        )
        for i, (order, _, _) in enumerate(ordered)
    ]
    stale = [o.pk for o, _, _ in missing if o.delivery_status != Order.DeliveryStatus.FAILED]
    stale_pending = [
        o.pk for o, _, _ in sendable if o.delivery_status != Order.DeliveryStatus.PENDING
    ]
    for status, pks in (
        (Order.DeliveryStatus.PENDING, stale_pending),
        (Order.DeliveryStatus.FAILED, stale),
    ):
        if pks:
            Order.objects.filter(pk__in=pks).update(delivery_status=status)
    for order, _, _ in sendable:
        order.delivery_status = Order.DeliveryStatus.PENDING
    for order, _, _ in missing:
        order.delivery_status = Order.DeliveryStatus.FAILED
    _queued_audit(created, actor=actor)
    failed = created[k:]
    if failed:
        event_emit_many(
            event_type="delivery.failed",
            events=[(d.programme_id, _failed_data(d, d.order)) for d in failed],
        )
    return created


def _queued_audit(created: list[Delivery], *, actor: Actor) -> None:
    by_programme: dict[int, list[Delivery]] = {}
    for delivery in created:
        by_programme.setdefault(delivery.programme_id, []).append(delivery)
    for programme_id, group in by_programme.items():
        # One event per programme and call: the orders' own creation is audited one by one.
        audit_log(
            actor=actor,
            action="delivery.queue",
            object_type="orders.delivery",
            object_id=group[0].pk if len(group) == 1 else f"{group[0].pk}..{group[-1].pk}",
            programme_id=programme_id,
            changes={
                "deliveries": [None, [d.pk for d in group]],
                "orders": [None, [d.order_id for d in group]],
                "failed": [None, [d.pk for d in group if d.status == Delivery.Status.FAILED]],
            },
        )


# --- status changes ----------------------------------------------------------------------------


def _order_follows(delivery: Delivery) -> None:
    """The order's delivery_status is its latest delivery's status."""
    later = Delivery.objects.filter(order_id=OuterRef("pk"), pk__gt=delivery.pk)
    Order.objects.filter(pk=delivery.order_id).exclude(Exists(later)).update(
        delivery_status=delivery.status
    )


def _transition(delivery: Delivery, target: str, **fields) -> None:
    """Move a locked delivery along DELIVERY_TRANSITIONS (raises and changes nothing otherwise)."""
    DELIVERY_TRANSITIONS.check(delivery.status, target)
    now = timezone.now()
    if target == Delivery.Status.DELIVERED:
        fields.setdefault("delivered_at", now)
    if target == Delivery.Status.FAILED:
        fields.setdefault("failed_at", now)
    updated = Delivery.objects.filter(pk=delivery.pk, status=delivery.status).update(
        status=target, updated_at=now, **fields
    )
    if updated != 1:  # cannot happen under the order and delivery locks
        raise RuntimeError(f"Delivery {delivery.pk} left {delivery.status} under its lock")
    delivery.status = target
    for name, value in fields.items():
        setattr(delivery, name, value)
    _order_follows(delivery)


def _fail(delivery: Delivery, *, reason: str, detail: str, **fields) -> None:
    _transition(
        delivery, Delivery.Status.FAILED, reason=reason[:64], reason_detail=detail, **fields
    )
    _failed_event(delivery, delivery.order)


def _lock(**lookup) -> Delivery | None:
    """The delivery matching `lookup`, with its order locked first and then itself (the lock
    order in the module docstring); None when there is none."""
    found = Delivery.objects.filter(**lookup).values_list("pk", "order_id").first()
    if found is None:
        return None
    delivery_id, order_id = found
    Order.objects.select_for_update(no_key=True).filter(pk=order_id).values_list("pk").first()
    return (
        Delivery.objects.select_for_update(no_key=True, of=("self",))
        .select_related("order__voucher", "order__member", "order__campaign__reward", "programme")
        .get(pk=delivery_id)
    )


# --- rendering and sending ---------------------------------------------------------------------


def _template(programme_slug: str, name: str):
    """A programme may override any message template: orders/delivery/programmes/<slug>/<name>
    in any template directory comes first."""
    return select_template(
        [f"{TEMPLATE_DIR}/programmes/{programme_slug}/{name}", f"{TEMPLATE_DIR}/{name}"]
    )


def delivery_context(*, order: Order) -> dict:
    voucher = order.voucher
    reward = order.campaign.reward
    expires_at = voucher.expires_at if voucher else None
    how = (reward.description or "").strip() or (
        "Enter the voucher code at checkout with the merchant, online or in store."
    )
    return {
        "programme_name": order.programme.name,
        "member_name": order.member.name,
        "reward_name": reward.name,
        "code": voucher.code if voucher else "",
        "value": order.value,
        "currency": order.currency,
        "expires_at": expires_at,
        "booking_id": order.booking_id,
        "how_to_redeem": how,
        "how_to_redeem_short": how if len(how) <= 80 else "",
    }


def delivery_render(*, delivery: Delivery, message_id: str) -> OutgoingMessage:
    """The message for the delivery's channel; dates in the programme's time zone."""
    with timezone.override(ZoneInfo(delivery.programme.timezone)):
        return _render(delivery, message_id)


def _render(delivery: Delivery, message_id: str) -> OutgoingMessage:
    order = delivery.order
    order.programme = delivery.programme  # the same row, already loaded with the delivery
    context = delivery_context(order=order)
    slug = delivery.programme.slug
    if delivery.channel == Channel.EMAIL:
        return OutgoingMessage(
            message_id=message_id,
            channel=delivery.channel,
            to=delivery.destination,
            subject=" ".join(_template(slug, "email_subject.txt").render(context).split()),
            text=_template(slug, "email.txt").render(context).strip() + "\n",
            html=_template(slug, "email.html").render(context),
            headers={"X-Plum-Booking-Id": order.booking_id},
        )
    return OutgoingMessage(
        message_id=message_id,
        channel=delivery.channel,
        to=delivery.destination,
        text=_template(slug, f"{delivery.channel}.txt").render(context).strip(),
    )


def _record_attempt(delivery, backend_name, outcome, started, *, http_status=None, excerpt=""):
    DeliveryAttempt.objects.create(
        delivery=delivery,
        attempted_at=timezone.now(),
        channel=delivery.channel,
        destination=delivery.destination,
        provider=backend_name,
        outcome=outcome,
        http_status=http_status,
        response_excerpt=(excerpt or "")[:500],
        latency_ms=int((monotonic() - started) * 1000),
    )


def delivery_send(message: OutboxMessage) -> None:
    """The outbox sender for kind "delivery": one attempt, recorded. Runs inside the outbox's
    transaction holding the message's row lock; raises the outbox's transient or permanent
    error so that it retries or stops."""
    delivery = _lock(outbox_message=message)
    if delivery is None:
        raise PermanentSendError("No delivery names this outbox message.")
    if delivery.status not in OPEN:
        return  # settled meanwhile (a receipt): nothing to send
    order = delivery.order
    if order.status != Order.Status.COMPLETED or order.voucher_id is None:
        _fail(delivery, reason="order_not_deliverable", detail=f"The order is {order.status}.")
        raise PermanentSendError(f"Order {order.booking_id} is {order.status}")
    outgoing = delivery_render(delivery=delivery, message_id=str(message.pk))
    backend = backend_for(delivery.channel, is_test=delivery.is_test)
    started = monotonic()
    try:
        result = backend.send(outgoing)
    except PermanentSendError as exc:
        reason = getattr(exc, "reason", "rejected")
        _record_attempt(
            delivery,
            backend.name,
            DeliveryAttempt.Outcome.PERMANENT,
            started,
            http_status=getattr(exc, "http_status", None),
            excerpt=getattr(exc, "excerpt", "") or str(exc),
        )
        _fail(
            delivery,
            reason=reason,
            detail=str(exc)[:2000],
            provider=backend.name,
            attempts=delivery.attempts + 1,
        )
        raise
    except Exception as exc:  # noqa: BLE001 - transient, or unexpected: the outbox retries both
        _record_attempt(
            delivery,
            backend.name,
            DeliveryAttempt.Outcome.TRANSIENT,
            started,
            http_status=getattr(exc, "http_status", None),
            excerpt=getattr(exc, "excerpt", "") or f"{type(exc).__name__}: {exc}",
        )
        fields = {
            "provider": backend.name,
            "reason_detail": f"{type(exc).__name__}: {exc}"[:2000],
            "attempts": delivery.attempts + 1,
        }
        if delivery.status == Delivery.Status.PENDING:
            _transition(delivery, Delivery.Status.PROCESSING, **fields)
        else:
            Delivery.objects.filter(pk=delivery.pk).update(**fields)
        if isinstance(exc, TransientSendError):
            raise
        raise DeliveryTransientError(f"{type(exc).__name__}: {exc}") from exc
    _record_attempt(
        delivery,
        backend.name,
        DeliveryAttempt.Outcome.SUCCESS,
        started,
        http_status=result.http_status,
        excerpt=result.response_excerpt,
    )
    _transition(
        delivery,
        Delivery.Status.DELIVERED,
        provider=backend.name,
        provider_message_id=result.provider_message_id,
        reason_detail="",
        attempts=delivery.attempts + 1,
    )


def delivery_outbox_failed(message: OutboxMessage) -> None:
    """The outbox gave up on a delivery's message (attempts ran out, or a permanent error the
    sender did not settle itself): the delivery fails, with the reason."""
    delivery = _lock(outbox_message=message)
    if delivery is None or delivery.status not in OPEN:
        return
    exhausted = message.status == OutboxMessage.Status.DEAD
    _fail(
        delivery,
        reason="retries_exhausted" if exhausted else "rejected",
        detail=(
            f"Gave up after {message.attempts} attempts: {message.last_error}"
            if exhausted
            else message.last_error
        ),
    )


register_sender(DELIVERY_KIND, on_failure=delivery_outbox_failed)(delivery_send)


# --- resend ------------------------------------------------------------------------------------


def _resent_by(actor: Actor) -> dict:
    if isinstance(actor, ApiClient):
        return {"resent_by_client": actor, "resent_by_label": client_label(actor)}
    if isinstance(actor, SystemActor):
        return {"resent_by_label": actor.label}
    return {"resent_by_user": actor, "resent_by_label": actor.get_username()}


def delivery_resend(
    *, order: Order, channel: str | None = None, contact: dict | None = None, actor: Actor
) -> Delivery:
    """Send the order's voucher again, as a new delivery, after a person corrected what was
    wrong. `contact` (name, email, phone, country) updates the member first (member_upsert,
    audited); `channel` overrides the channel for this send (default: the previous delivery's,
    else the member's or programme's). The new delivery goes to the member's address as it is
    after the correction. Refused, with nothing changed: an order that is not completed
    (order_not_deliverable), a delivery of the order still in flight (delivery_in_progress, and
    the delivery_one_open_per_order constraint), invalid contact details (invalid_recipient),
    no address for the channel (missing_contact)."""
    if channel is not None and channel not in Channel.values:
        raise InvalidInputError(fields={"channel": [f"Unknown channel {channel!r}."]})
    unknown = sorted(set(contact or {}) - set(CONTACT_FIELDS))
    if unknown:
        raise InvalidInputError(fields={name: ["Unknown field."] for name in unknown})
    with transaction.atomic(durable=True):
        current = (
            Order.objects.select_for_update(no_key=True, of=("self",))
            .select_related("member", "campaign", "programme")
            .get(pk=order.pk)
        )
        if current.status != Order.Status.COMPLETED or current.voucher_id is None:
            raise OrderNotDeliverableError(status=current.status)
        previous = Delivery.objects.filter(order=current).order_by("-pk").first()
        if previous is not None and previous.status in OPEN:
            raise DeliveryInProgressError(delivery_id=previous.pk)
        member = current.member
        if contact:
            try:
                member, _ = member_upsert(
                    programme=current.programme,
                    external_id=member.external_id,
                    actor=actor,
                    data=dict(contact),
                )
            except InvalidInputError as exc:
                raise RecipientInvalidError(fields=exc.fields) from exc
            current.member = member
        channel = channel or (previous.channel if previous else delivery_channel_for(order=current))
        destination = delivery_destination(member=member, channel=channel)
        if not destination:
            raise DeliveryContactMissingError(
                f"The member has no {'e-mail address' if channel == Channel.EMAIL else 'phone'}"
                f" for {channel}.",
                fields={"email" if channel == Channel.EMAIL else "phone": ["Required."]},
            )
        (message,) = outbox_enqueue_many(
            kind=DELIVERY_KIND,
            messages=[
                (
                    {"order_id": current.pk, "booking_id": current.booking_id, "channel": channel},
                    current.programme_id,
                )
            ],
            max_attempts=_max_attempts(),
        )
        delivery = Delivery(
            order=current,
            programme_id=current.programme_id,
            campaign_id=current.campaign_id,
            channel=channel,
            destination=destination,
            outbox_message=message,
            is_test=current.is_test,
            is_resend=previous is not None,
            previous=previous,
            **(_resent_by(actor) if previous is not None else {}),
        )
        try:
            with transaction.atomic():
                delivery.save(force_insert=True)
        except IntegrityError as exc:  # a concurrent send of this order slipped in
            raise DeliveryInProgressError() from exc
        _order_follows(delivery)
        audit_log(
            actor=actor,
            action="delivery.resend" if previous is not None else "delivery.queue",
            obj=delivery,
            changes={
                "order": [None, current.booking_id],
                "channel": [previous.channel if previous else None, channel],
                "destination": [previous.destination if previous else None, destination],
                "previous": [None, previous.pk if previous else None],
                **({"contact_corrected": [None, sorted(contact)]} if contact else {}),
            },
        )
        return delivery


# --- receipts ----------------------------------------------------------------------------------


def delivery_receipt_record(
    *, provider: str, provider_message_id: str, status: str, reason: str = "", detail: str = ""
) -> Delivery | None:
    """A provider reports what became of a message it accepted. delivered: a delivery still in
    flight becomes delivered; failed: it becomes failed with the reason (also after it was
    marked delivered on acceptance). Receiving the same receipt again changes nothing. Returns
    None when no delivery of this provider has that id."""
    if status not in (Delivery.Status.DELIVERED, Delivery.Status.FAILED):
        raise InvalidInputError(fields={"status": ["Use delivered or failed."]})
    with transaction.atomic(durable=True):
        if not provider_message_id:
            return None
        delivery = _lock(provider=provider, provider_message_id=provider_message_id)
        if delivery is None:
            return None
        if delivery.status == status:
            return delivery
        before = delivery.status
        if status == Delivery.Status.DELIVERED:
            _transition(delivery, Delivery.Status.DELIVERED)
        else:
            _fail(
                delivery,
                reason=(reason or "undelivered")[:64],
                detail=detail or f"The provider {provider} reported the message undelivered.",
            )
        audit_log(
            actor=SystemActor(label=f"provider:{provider}"[:200]),
            action="delivery.receipt",
            obj=delivery,
            changes={"status": [before, status], **({"reason": [None, reason]} if reason else {})},
        )
        return delivery
