"""The order lifecycle: issue (fulfil at once, or hold for approval), approve, reject, cancel.

Invariants:
- a completed order has exactly one voucher, issued by `voucher_issue` in the transaction that
  completed the order, so the campaign's counters (max rewards, budget, per-member cap) move
  exactly when an order completes, and `voucher_cancel` gives them back exactly when a
  completed order is cancelled;
- a refused issuance creates nothing: governance refusals (campaign_not_active,
  campaign_exhausted, budget_exhausted, member_cap_reached, pool_exhausted) roll the whole
  transaction back, with the recipient's member upsert, so no order row, audit event or outbox
  message records it. The caller gets the error; an event rule that needs a record of the
  refusal keeps it on its own event (events issue);
- a held order (campaign approval_mode manual) takes no counter until it is approved; an
  approval that governance refuses leaves the order pending and raises;
- a storefront redemption (`order_redeem_points`) burns the member's points and issues the
  order in one transaction: a refusal of either leaves neither. The order names its burn
  (`points_transaction`); cancelling it reverses that burn in the cancelling transaction, once
  (the order row lock, and the ledger's one-reversal-per-transaction constraint);
- every status change follows ORDER_TRANSITIONS. Approve, reject and cancel lock the order row
  first (`select_for_update`), cancel then the voucher row: a double approval or a double
  cancellation is impossible (the second finds the order no longer in a source state), and a
  redemption racing a cancellation either commits first and refuses it, or finds the voucher
  cancelled.
"""

import math
import secrets
from collections.abc import Callable
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from campaigns.codes import ALPHABET
from campaigns.errors import CampaignNotActiveError
from campaigns.models import Campaign, Voucher, VoucherStatus
from campaigns.services.vouchers import campaign_is_issuing, voucher_cancel, voucher_issue
from orders.errors import (
    CampaignApprovalRequiredError,
    CampaignNotInStorefrontError,
    CampaignNotPricedInPointsError,
    OrderNotAwaitingApprovalError,
    OrderVoucherUsedError,
    RecipientInvalidError,
    RedemptionTestModeError,
)
from orders.models import ORDER_TRANSITIONS, Order
from orders.services.delivery import deliveries_queue
from plum import sql as raw
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import Member, Programme
from plum.services.audit import audit_batch, audit_log
from plum.services.events import event_emit, events_emit
from plum.services.outbox import outbox_batch
from plum.services.programmes import MEMBER_FIELDS, member_upsert
from wallets.models import Reason
from wallets.services import points_burn, transaction_reverse

BOOKING_PREFIX = "PLM"
BOOKING_ATTEMPTS = 8
RECIPIENT_FIELDS = ["external_id", *MEMBER_FIELDS]


def booking_id_new() -> str:
    """PLM-XXXX-XXXX: 8 characters from the unambiguous code alphabet, about 40 bits."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(8))
    return f"{BOOKING_PREFIX}-{body[:4]}-{body[4:]}"


def _order_event(event_type: str, order: Order, **data) -> None:
    event_emit(
        event_type=event_type, programme_id=order.programme_id, data=_order_data(order, **data)
    )


def _order_data(order: Order, **data) -> dict:
    return {
        "booking_id": order.booking_id,
        "order_id": order.pk,
        "campaign_id": order.campaign_id,
        "member_external_id": order.member.external_id,
        "value": str(order.value),
        "currency": order.currency,
        "source": order.source,
        "status": order.status,
        "approval_state": order.approval_state,
        "is_test": order.is_test,
        "reference": order.reference,
        **data,
    }


def _insert(order: Order) -> Order:
    """Insert with a fresh booking id; a collision (unique constraint) draws again. On
    Postgres one `INSERT ... ON CONFLICT (booking_id) DO NOTHING RETURNING` (no savepoint):
    a collision inserts nothing and the loop draws again."""
    for _ in range(BOOKING_ATTEMPTS):
        order.booking_id = booking_id_new()
        if connection.vendor == "postgresql":
            if raw.row_insert(order, conflict=("booking_id",)):
                return order
            continue
        try:
            with transaction.atomic():
                order.save(force_insert=True)
        except IntegrityError:
            if Order.objects.filter(booking_id=order.booking_id).exists():
                order.pk = None
                continue
            raise
        return order
    raise RuntimeError(f"Could not draw a unique booking id in {BOOKING_ATTEMPTS} attempts")


def _checked_value(campaign: Campaign, value: Decimal | None) -> Decimal:
    value = campaign.value if value is None else value
    if value != campaign.value and not campaign.reward.accepts_value(value):
        raise InvalidInputError(fields={"value": ["The reward is not sold at this value."]})
    return value


def _issue(
    *,
    campaign: Campaign,
    member: Member,
    value: Decimal | None,
    source: str,
    reference: str,
    actor: Actor,
    is_test: bool,
    points: int | None = None,
) -> Order:
    if member.programme_id != campaign.programme_id:
        raise RecipientInvalidError("The member belongs to another programme.")
    if source not in Order.Source.values:
        raise InvalidInputError(fields={"source": [f"Unknown source {source!r}."]})
    value = _checked_value(campaign, value)
    now = timezone.now()
    # The campaign's programme object when loaded (the API's scoped read joins it): the
    # delivery's channel and the rendered order read it without another query.
    programme = campaign.programme
    order = raw.new(
        Order,
        programme_id=programme.pk,
        campaign_id=campaign.pk,
        member_id=member.pk,
        value=value,
        currency=campaign.currency,
        source=source,
        reference=reference or "",
        is_test=is_test,
        points=points,
    )
    Order.programme.field.set_cached_value(order, programme)
    Order.campaign.field.set_cached_value(order, campaign)
    Order.member.field.set_cached_value(order, member)
    if campaign.approval_mode == Campaign.ApprovalMode.MANUAL:
        # Held for approval: no counter is taken until an approver fulfils it, but a campaign
        # that is not issuing refuses at once rather than filling the queue.
        if not campaign_is_issuing(campaign.pk, now):
            raise CampaignNotActiveError()
        order.status = Order.Status.PENDING
        order.approval_state = Order.ApprovalState.PENDING
    else:
        order.voucher = voucher_issue(
            campaign=campaign, member=member, actor=actor, is_test=is_test, value=value
        )
        order.status = Order.Status.COMPLETED
        order.completed_at = timezone.now()
    _insert(order)
    audit_log(
        actor=actor,
        action="order.create",
        obj=order,
        changes={
            "booking_id": [None, order.booking_id],
            "status": [None, order.status],
            "approval_state": [None, order.approval_state],
            "campaign": [None, campaign.pk],
            "member": [None, member.pk],
            "value": [None, str(value)],
            "source": [None, source],
            "voucher": [None, order.voucher_id],
            "is_test": [None, is_test],
            **({"points": [None, points]} if points is not None else {}),
        },
    )
    # Both events in one outbox INSERT.
    if order.status == Order.Status.COMPLETED:
        second = ("order.completed", _order_data(order, voucher_id=order.voucher_id))
    else:
        second = ("order.pending_approval", _order_data(order))
    events_emit(
        events=[
            ("order.created", order.programme_id, _order_data(order)),
            (second[0], order.programme_id, second[1]),
        ]
    )
    if order.status == Order.Status.COMPLETED:
        deliveries_queue(orders=[order], actor=actor, fresh=True)
    return order


def order_issue(
    *,
    campaign: Campaign,
    member: Member,
    value: Decimal | None = None,
    source: str,
    reference: str = "",
    actor: Actor,
    is_test: bool = False,
) -> Order:
    """One order for one member, in one transaction: fulfilled at once (status completed, with
    its voucher) or, when the campaign holds rewards for approval, pending approval. Governance
    refusals propagate and leave nothing behind (see the module docstring)."""
    with transaction.atomic(durable=True):
        return _issue(
            campaign=campaign,
            member=member,
            value=value,
            source=source,
            reference=reference,
            actor=actor,
            is_test=is_test,
        )


def redemption_points(*, campaign: Campaign, value: Decimal) -> int:
    """What `value` of the campaign's reward costs in points: value x points_price, rounded up
    (a fraction of a point is never given away)."""
    return math.ceil(value * campaign.reward.points_price)


def order_redeem_points(
    *,
    campaign: Campaign,
    member: Member,
    value: Decimal | None = None,
    reference: str = "",
    actor: Actor,
    is_test: bool = False,
) -> Order:
    """A member buys a storefront campaign's reward with points: the burn and the order (source
    storefront, issued exactly as `order_issue` issues) share one durable transaction, so a
    governance refusal or insufficient_points leaves no burn, no order, no counter moved.

    Only campaigns that fulfil at once can be bought: a manual-approval campaign refuses
    (campaign_approval_required) rather than burn points for a reward an approver might
    reject. The ledger has no test mode, so a test redemption refuses too. Lock order: the
    campaign's counters (through voucher_issue), then the wallet (through points_burn), as
    the wallets service asks."""
    if is_test:
        raise RedemptionTestModeError()
    with transaction.atomic(durable=True):
        if not campaign.in_storefront:
            raise CampaignNotInStorefrontError()
        if campaign.approval_mode == Campaign.ApprovalMode.MANUAL:
            raise CampaignApprovalRequiredError()
        if not campaign.reward.points_price:
            raise CampaignNotPricedInPointsError()
        if member.programme_id != campaign.programme_id:
            raise RecipientInvalidError("The member belongs to another programme.")
        value = _checked_value(campaign, value)
        points = redemption_points(campaign=campaign, value=value)
        order = _issue(
            campaign=campaign,
            member=member,
            value=value,
            source=Order.Source.STOREFRONT,
            reference=reference,
            actor=actor,
            is_test=False,
            points=points,
        )
        # Keyed by the order, never by the caller's reference: two purchases with one reference
        # are two burns. The API's Idempotency-Key is what makes a retry buy nothing.
        txn, _ = points_burn(
            member=member,
            points=points,
            reason=Reason.REDEMPTION,
            reference=order.booking_id,
            idempotency_key=f"order:{order.booking_id}",
            actor=actor,
        )
        Order.objects.filter(pk=order.pk).update(points_transaction=txn)
        order.points_transaction = txn
        return order


def recipient_upsert(
    *, programme: Programme, recipient: dict, actor: Actor, savepoint: bool = True
) -> Member:
    """The member a recipient names (by external_id), created or updated with the contact
    details given. Invalid details are `invalid_recipient`, with the fields that are wrong.
    `savepoint=False`: the caller's transaction fails as a whole on any error (member_upsert)."""
    data = {k: v for k, v in recipient.items() if k in RECIPIENT_FIELDS}
    external_id = (data.pop("external_id", "") or "").strip()
    if not external_id:
        raise RecipientInvalidError(fields={"recipient.external_id": ["This field is required."]})
    try:
        member, _ = member_upsert(
            programme=programme,
            external_id=external_id,
            actor=actor,
            data=data,
            savepoint=savepoint,
        )
    except InvalidInputError as exc:
        raise RecipientInvalidError(
            fields={f"recipient.{name}": errors for name, errors in exc.fields.items()}
        ) from exc
    return member


def order_issue_to_recipient(
    *,
    campaign: Campaign,
    recipient: dict,
    value: Decimal | None = None,
    source: str,
    reference: str = "",
    actor: Actor,
    is_test: bool = False,
    on_issued: Callable[[Order], None] | None = None,
) -> Order:
    """`order_issue` for a recipient described by external id and contact details: the member
    upsert and the order share one transaction, so a refused issuance creates no member
    either. `on_issued(order)` runs last inside that transaction: the API stores its
    idempotent response there, so the order and the response commit together."""
    with transaction.atomic(durable=True):
        # Any refusal fails this whole transaction: no savepoint around the member upsert; the
        # outbox messages (the order's events, its delivery's message), the audit events
        # (member, voucher, order, delivery) and the stored response (on_issued) are written
        # by one statement at the end, which nothing before the commit reads.
        with raw.deferred_writes():
            with audit_batch(), outbox_batch():
                member = recipient_upsert(
                    programme=campaign.programme,
                    recipient=recipient,
                    actor=actor,
                    savepoint=False,
                )
                order = _issue(
                    campaign=campaign,
                    member=member,
                    value=value,
                    source=source,
                    reference=reference,
                    actor=actor,
                    is_test=is_test,
                )
            if on_issued is not None:
                on_issued(order)
        return order


def _lock(order: Order) -> Order:
    return (
        Order.objects.select_for_update(no_key=True, of=("self",))
        .select_related("member", "campaign__reward")
        .get(pk=order.pk)
    )


def _awaiting_approval(current: Order, target: str) -> None:
    ORDER_TRANSITIONS.check(current.status, target)
    if current.approval_state != Order.ApprovalState.PENDING:
        raise OrderNotAwaitingApprovalError(
            source=current.status, approval_state=current.approval_state
        )


def order_approve(*, order: Order, actor: Actor) -> Order:
    """Fulfil a held order. Governance may still refuse (the campaign ran out meanwhile): the
    error is raised and the order stays pending, unchanged."""
    with transaction.atomic(durable=True):
        current = _lock(order)
        _awaiting_approval(current, Order.Status.COMPLETED)
        voucher = voucher_issue(
            campaign=current.campaign,
            member=current.member,
            actor=actor,
            is_test=current.is_test,
            value=current.value,
        )
        now = timezone.now()
        Order.objects.filter(pk=current.pk, status=Order.Status.PENDING).update(
            status=Order.Status.COMPLETED,
            approval_state=Order.ApprovalState.APPROVED,
            voucher=voucher,
            approved_at=now,
            completed_at=now,
            updated_at=now,
        )
        current.refresh_from_db()
        audit_log(
            actor=actor,
            action="order.approve",
            obj=current,
            changes={
                "status": [Order.Status.PENDING, Order.Status.COMPLETED],
                "approval_state": [Order.ApprovalState.PENDING, Order.ApprovalState.APPROVED],
                "voucher": [None, voucher.pk],
            },
        )
        _order_event("order.completed", current, voucher_id=voucher.pk)
        deliveries_queue(orders=[current], actor=actor)
        return current


def order_reject(*, order: Order, actor: Actor, reason: str = "") -> Order:
    """Refuse a held order: it is cancelled, and took nothing to give back."""
    with transaction.atomic(durable=True):
        current = _lock(order)
        _awaiting_approval(current, Order.Status.CANCELLED)
        now = timezone.now()
        Order.objects.filter(pk=current.pk, status=Order.Status.PENDING).update(
            status=Order.Status.CANCELLED,
            approval_state=Order.ApprovalState.REJECTED,
            cancelled_at=now,
            updated_at=now,
        )
        current.refresh_from_db()
        audit_log(
            actor=actor,
            action="order.reject",
            obj=current,
            changes={
                "status": [Order.Status.PENDING, Order.Status.CANCELLED],
                "approval_state": [Order.ApprovalState.PENDING, Order.ApprovalState.REJECTED],
                "reason": [None, reason],
            },
        )
        _order_event("order.cancelled", current, reason=reason, rejected=True)
        return current


# A voucher in these states was already taken back (recovered to the pool or retired) and its
# counters released by that recovery: cancelling the order leaves it alone.
_RETURNED = {VoucherStatus.AVAILABLE, VoucherStatus.RECOVERED, VoucherStatus.CANCELLED}
_USED = {VoucherStatus.PARTIALLY_REDEEMED, VoucherStatus.REDEEMED}


def _holds(order: Order, voucher: Voucher) -> bool:
    """Whether the order still holds its voucher: not taken back by a recovery, and not
    issued again from the pool to a later order (possibly of the same member)."""
    return (
        voucher.status not in _RETURNED
        and voucher.member_id == order.member_id
        and not Order.objects.filter(voucher_id=voucher.pk, pk__gt=order.pk).exists()
    )


def order_cancel(*, order: Order, actor: Actor, reason: str = "") -> Order:
    """Cancel a pending order, or a completed one whose voucher is unredeemed: the voucher is
    cancelled in the same transaction and gives back exactly the counts its issue took, and
    the points a storefront redemption burned are reversed to the member's wallet. A
    redeemed (even partly) voucher refuses with order_voucher_used; a voucher the transition
    table does not let go to cancelled (expired) with invalid_transition; so does a second
    cancellation."""
    with transaction.atomic(durable=True):
        current = _lock(order)
        ORDER_TRANSITIONS.check(current.status, Order.Status.CANCELLED)
        voucher_status = None
        if current.voucher_id is not None:
            # Locked before it is read: a redemption racing this cancellation either commits
            # first (and is seen here) or waits and then finds the voucher cancelled.
            voucher = Voucher.objects.select_for_update(no_key=True).get(pk=current.voucher_id)
            if _holds(current, voucher):
                if voucher.balance != voucher.face_value or voucher.status in _USED:
                    raise OrderVoucherUsedError(voucher_status=voucher.status)
                voucher = voucher_cancel(voucher=voucher, actor=actor)
            voucher_status = voucher.status
        return _cancel_locked(current, actor=actor, reason=reason, voucher_status=voucher_status)


def _cancel_locked(
    current: Order,
    *,
    actor: Actor,
    reason: str,
    voucher_status: str | None,
    recovered: bool = False,
    detach_voucher: bool = False,
) -> Order:
    """The part of a cancellation after the order row is locked and its voucher dealt with:
    reverse the points a storefront redemption burned (once: the ledger reverses a
    transaction at most once, and the key is the order's), move the order to cancelled by a
    conditional UPDATE, audit and emit `order.cancelled`."""
    reversal_id = None
    if current.points_transaction_id is not None:
        # Under the order's row lock, and the ledger reverses a transaction at most once:
        # a second cancellation is refused by the transition table, so the points come back
        # exactly once.
        reversal, _ = transaction_reverse(
            transaction=current.points_transaction,
            actor=actor,
            reason=Reason.ORDER_CANCELLED,
            note=reason,
            idempotency_key=f"order-cancel:{current.booking_id}",
        )
        reversal_id = reversal.pk
    now = timezone.now()
    fields = {"status": Order.Status.CANCELLED, "cancelled_at": now, "updated_at": now}
    if detach_voucher:
        fields["voucher"] = None
    updated = Order.objects.filter(
        pk=current.pk, status__in=ORDER_TRANSITIONS.sources_for(Order.Status.CANCELLED)
    ).update(**fields)
    if updated != 1:  # cannot happen under the row lock; never cancel the voucher alone
        raise RuntimeError(f"Order {current.pk} left {current.status} under its lock")
    before, voucher_id = current.status, current.voucher_id
    current.refresh_from_db()
    audit_log(
        actor=actor,
        action="order.cancel",
        obj=current,
        changes={
            "status": [before, Order.Status.CANCELLED],
            "voucher_status": [None, voucher_status],
            "reason": [None, reason],
            **({"points_reversal": [None, reversal_id]} if reversal_id else {}),
            **({"cancelled_by": [None, "voucher_recovery"]} if recovered else {}),
            **({"voucher": [voucher_id, None]} if detach_voucher else {}),
        },
    )
    _order_event("order.cancelled", current, reason=reason, rejected=False)
    return current


RECOVERY_REASON = "voucher_recovered"


class OrderVoucherRecoveryHook:
    """Registered with campaigns (campaigns.hooks) in OrdersConfig.ready(): recovering a
    voucher cancels the order holding it, in the recovery's transaction.

    What the cancellation releases is exactly what `order_cancel` releases: the campaign and
    per-member counters (given back once, by the recovery itself, which moves the voucher),
    and the points a storefront redemption burned (reversed here, once). Lock order is
    `order_cancel`'s: orders (id order) before vouchers, so a recovery racing a cancellation
    of the same order waits for it and then finds the voucher cancelled (refused, not
    recovered), or wins and the cancellation finds the order cancelled (invalid_transition).

    A code recovered *to the pool* can be issued again to a later order, so the cancelled
    order lets go of it (`voucher` set to null; the audit event keeps which it was): its reads
    never show another member's live code. A retired code (status recovered) is never issued
    again and stays on the order, showing status recovered."""

    def lock_holders(self, *, voucher_ids) -> None:
        list(
            Order.objects.select_for_update(no_key=True, of=("self",))
            .filter(voucher_id__in=voucher_ids, status=Order.Status.COMPLETED)
            .order_by("id")
            .values_list("id", flat=True)
        )

    def recovered(self, *, vouchers: list, to_pool: bool, actor: Actor) -> None:
        by_id = {v.pk: v for v in vouchers}
        holders: dict[int, Order] = {}
        candidates = (
            Order.objects.filter(voucher_id__in=list(by_id), status=Order.Status.COMPLETED)
            .select_related("member", "points_transaction")
            .order_by("id")
        )
        for order in candidates:
            # The latest completed order naming the voucher, issued to the member the voucher
            # was issued to, holds it (an older one lost it to an earlier recovery).
            if order.member_id == by_id[order.voucher_id].member_id:
                holders[order.voucher_id] = order
        for order in sorted(holders.values(), key=lambda o: o.pk):
            _cancel_locked(
                order,
                actor=actor,
                reason=RECOVERY_REASON,
                voucher_status=VoucherStatus.AVAILABLE if to_pool else VoucherStatus.RECOVERED,
                recovered=True,
                detach_voucher=to_pool,
            )
