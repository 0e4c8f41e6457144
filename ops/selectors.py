"""Portal reads. Every function takes `programmes` (ops.access.agent_programmes: what the agent
works on) and filters `programme__in=` on it, so an object of another programme is simply not
found: the views turn that into the same 404 (or the same empty search) as a missing object.
Each function costs a fixed number of queries, whatever the number of rows."""

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from campaigns.codes import normalize
from campaigns.errors import (
    LookupLimiterUnavailableError,
    TooManyFailedLookupsError,
    VoucherCodeMistypedError,
    VoucherNotFoundError,
)
from campaigns.models import Redemption, Voucher
from campaigns.services.lookups import voucher_get_guarded
from orders.models import Delivery, Order
from plum.models import AuditEvent, Member
from support.models import Ticket

BOOKING_ID_RE = re.compile(r"^(?:PLM)?([A-Z0-9]{4})([A-Z0-9]{4})$")
PHONE_JUNK_RE = re.compile(r"[\s().\-/]")
SEARCH_LIMIT = 50


def _in(programmes: QuerySet) -> QuerySet:
    return programmes.values("pk")


# --- search ------------------------------------------------------------------------------------


def booking_id_normalize(text: str) -> str | None:
    """ "plm-abcd-efgh", "PLMABCDEFGH", "abcd efgh" → "PLM-ABCD-EFGH"; None if it cannot be one."""
    match = BOOKING_ID_RE.match(normalize(text or ""))
    return f"PLM-{match[1]}-{match[2]}" if match else None


def phone_normalize(text: str) -> str | None:
    """An E.164 number as stored: spaces, dots, dashes and brackets dropped, a leading 00 read
    as +, a bare run of digits read as already carrying its country code. None if not a phone."""
    raw = PHONE_JUNK_RE.sub("", text or "")
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    if not raw.startswith("+"):
        raw = "+" + raw
    return raw if re.fullmatch(r"\+[1-9][0-9]{6,14}", raw) else None


@dataclass
class SearchResult:
    query: str
    orders: list = field(default_factory=list)
    vouchers: list = field(default_factory=list)
    members: list = field(default_factory=list)
    refused: str = ""  # a reason in words when the search itself was refused (rate limit)

    @property
    def is_empty(self) -> bool:
        return not (self.orders or self.vouchers or self.members)


def ops_search(*, programmes: QuerySet, query: str, principal) -> SearchResult:
    """Orders, vouchers and members of the agent's programmes matching `query`: a booking ID
    (any case, with or without dashes), a voucher code (exact once normalised, as the code
    lookup does), a member's external id (exact), e-mail (case-insensitive, exact) or phone
    (normalised to E.164). Anything of another programme is not found, exactly like something
    that does not exist.

    A voucher code is only looked up when nothing else matched, through the guarded lookup
    (campaigns.services.lookups): an unknown code counts against the agent's failed-lookup
    limit and is audited with its last four characters only, never the whole code.
    Four queries at most (members, the voucher, orders, plus the guarded lookup's audit)."""
    query = (query or "").strip()[:254]
    result = SearchResult(query=query)
    if not query:
        return result
    scope = _in(programmes)

    member_match = Q(external_id=query)
    if "@" in query:
        member_match |= Q(email__iexact=query)
    phone = phone_normalize(query)
    if phone:
        member_match |= Q(phone=phone)
    result.members = list(
        Member.objects.filter(member_match, programme__in=scope)
        .select_related("programme")
        .order_by("programme_id", "external_id")[:SEARCH_LIMIT]
    )

    booking_id = booking_id_normalize(query)
    code = normalize(query)
    voucher = None
    if not result.members and code.isalnum():
        exists_as_booking = (
            booking_id is not None
            and Order.objects.filter(booking_id=booking_id, programme__in=scope).exists()
        )
        if not exists_as_booking:
            try:
                voucher = voucher_get_guarded(
                    principal=principal,
                    code=code,
                    queryset=Voucher.objects.filter(programme__in=scope).select_related(
                        "campaign", "programme"
                    ),
                )
            except (VoucherNotFoundError, VoucherCodeMistypedError):
                voucher = None
            except TooManyFailedLookupsError:
                result.refused = (
                    "Too many searches for unknown voucher codes in the last minute. "
                    "Wait a minute and try again."
                )
            except LookupLimiterUnavailableError:
                result.refused = (
                    "Voucher code search is paused while its rate limiter is unavailable; try "
                    "again shortly. Booking IDs, member IDs, e-mails and phones still work."
                )
    if voucher is not None:
        result.vouchers = [voucher]

    order_match = Q(pk__in=[])
    if booking_id:
        order_match |= Q(booking_id=booking_id)
    if voucher is not None:
        order_match |= Q(voucher_id=voucher.pk)
    if booking_id or voucher is not None:
        result.orders = list(
            Order.objects.filter(order_match, programme__in=scope)
            .select_related("member", "campaign", "voucher", "programme")
            .order_by("-id")[:SEARCH_LIMIT]
        )
    return result


# --- one order ---------------------------------------------------------------------------------


def ops_order_get(*, programmes: QuerySet, booking_id: str) -> Order | None:
    """One order of the agent's programmes by booking ID (any case, dashes optional); None
    for a missing order and one of another programme alike."""
    normalized = booking_id_normalize(booking_id)
    if normalized is None:
        return None
    return (
        Order.objects.filter(booking_id=normalized, programme__in=_in(programmes))
        .select_related("member", "campaign__reward__merchant", "voucher", "programme")
        .first()
    )


@dataclass
class TimelineEntry:
    at: datetime
    kind: str  # order, voucher, delivery, attempt, redemption, ticket, resend
    title: str
    detail: str = ""
    actor: str = ""
    tone: str = ""  # ok, bad, wait: how the page colours it
    order: int = 0  # tie-break inside one instant: creation before what follows it


ORDER_ACTIONS = {
    "order.create": ("Order created", ""),
    "order.approve": ("Approved", "ok"),
    "order.reject": ("Rejected", "bad"),
    "order.cancel": ("Cancelled", "bad"),
}
VOUCHER_ACTIONS = {
    "voucher.issue": ("Fulfilled: voucher issued", "ok"),
    "voucher.reveal": ("Voucher code revealed", ""),
    "voucher.cancel": ("Voucher cancelled", "bad"),
    "voucher.expire": ("Voucher expired", "bad"),
    "voucher.extend": ("Voucher expiry extended", ""),
    "voucher.flag": ("Voucher flagged", "bad"),
    "voucher.unflag": ("Voucher unflagged", "ok"),
    "voucher.recover": ("Voucher recovered", "bad"),
}
# Redemptions come from the Redemption rows; first deliveries from the Delivery rows.
SKIPPED_ACTIONS = {"voucher.redeem", "delivery.queue"}


def _ticket_title(event: AuditEvent) -> str:
    status = (event.changes.get("status") or [None, None])[1]
    if event.action == "ticket.open":
        return f"Ticket #{event.object_id} opened"
    verb = event.action.split(".", 1)[1].replace("_", " ")
    return f"Ticket #{event.object_id}: {verb}" + (f" ({status})" if status else "")


def _audit_entry(event: AuditEvent) -> TimelineEntry | None:
    actor = event.actor_label
    if event.action in ORDER_ACTIONS:
        title, tone = ORDER_ACTIONS[event.action]
        reason = (event.changes.get("reason") or [None, None])[1]
        return TimelineEntry(
            event.occurred_at, "order", title, str(reason or ""), actor, tone, order=0
        )
    if event.action in VOUCHER_ACTIONS:
        title, tone = VOUCHER_ACTIONS[event.action]
        return TimelineEntry(event.occurred_at, "voucher", title, "", actor, tone, order=1)
    if event.action == "delivery.resend":
        changes = event.changes
        channel = (changes.get("channel") or [None, ""])[1]
        destination = (changes.get("destination") or [None, ""])[1]
        corrected = (changes.get("contact_corrected") or [None, []])[1]
        detail = f"{channel} to {destination}"
        if corrected:
            detail += f"; corrected {', '.join(corrected)}"
        return TimelineEntry(event.occurred_at, "resend", "Resent", detail, actor, order=2)
    if event.action == "delivery.receipt":
        status = (event.changes.get("status") or [None, ""])[1]
        tone = "ok" if status == "delivered" else "bad"
        return TimelineEntry(
            event.occurred_at, "delivery", f"Provider receipt: {status}", "", actor, tone, 4
        )
    if event.object_type == "support.ticket":
        return TimelineEntry(event.occurred_at, "ticket", _ticket_title(event), "", actor, order=5)
    if event.action in SKIPPED_ACTIONS:
        return None
    return TimelineEntry(event.occurred_at, "other", event.action, "", actor, order=6)


def _delivery_entries(delivery: Delivery) -> list[TimelineEntry]:
    channel = delivery.get_channel_display()
    to = f" to {delivery.destination}" if delivery.destination else ""
    entries = []
    if not delivery.is_resend:
        entries.append(
            TimelineEntry(
                delivery.created_at, "delivery", f"Delivery queued: {channel}{to}", order=3
            )
        )
    for attempt in delivery.attempt_set.all():
        tone = {"success": "ok", "transient": "wait", "permanent": "bad"}[attempt.outcome]
        detail = attempt.response_excerpt
        if attempt.http_status:
            detail = f"HTTP {attempt.http_status} {detail}".strip()
        entries.append(
            TimelineEntry(
                attempt.attempted_at,
                "attempt",
                f"Delivery attempt ({attempt.get_channel_display()}{to}): "
                f"{attempt.get_outcome_display().lower()}",
                detail[:200],
                attempt.provider,
                tone,
                order=4,
            )
        )
    if delivery.status == Delivery.Status.DELIVERED and delivery.delivered_at:
        entries.append(
            TimelineEntry(
                delivery.delivered_at,
                "delivery",
                f"Delivered: {channel}{to}",
                "",
                "",
                "ok",
                order=5,
            )
        )
    if delivery.status == Delivery.Status.FAILED and delivery.failed_at:
        entries.append(
            TimelineEntry(
                delivery.failed_at,
                "delivery",
                f"Delivery failed: {channel}{to}",
                f"{delivery.reason}: {delivery.reason_detail}"[:300],
                "",
                "bad",
                order=5,
            )
        )
    return entries


@dataclass
class OrderStory:
    timeline: list[TimelineEntry]
    deliveries: list[Delivery]
    tickets: list[Ticket]
    redemptions: list[Redemption]


def ops_order_story(*, order: Order) -> OrderStory:
    """Everything that happened to the order, oldest first, from the audit log (the order's
    own events, its voucher's, its deliveries' resends and receipts, its tickets') merged with
    the delivery records (each delivery and each attempt with its outcome) and the voucher's
    redemptions. Six queries whatever the number of events.

    A voucher recovered unused to the pool can be issued again to a later order: then the
    voucher's events and redemptions are those between the creation of the previous order
    holding it and the creation of the next one (the recovery, and a next auto-fulfilled
    issue, happen just before the next order is created and may show on the neighbour)."""
    deliveries = list(
        Delivery.objects.filter(order=order)
        .order_by("id")
        .prefetch_related(
            # DeliveryAttempt's default ordering is (delivery, id)
            "attempt_set"
        )
    )
    tickets = list(Ticket.objects.filter(order=order).order_by("id"))
    ticket_ids = (
        Ticket.objects.filter(order=order)
        .annotate(key=Cast("pk", output_field=CharField()))
        .values("key")
    )
    delivery_ids = (
        Delivery.objects.filter(order=order)
        .annotate(key=Cast("pk", output_field=CharField()))
        .values("key")
    )
    match = Q(object_type="orders.order", object_id=str(order.pk))
    match |= Q(object_type="orders.delivery", object_id__in=delivery_ids)
    match |= Q(object_type="support.ticket", object_id__in=ticket_ids)
    redemptions: list[Redemption] = []
    if order.voucher_id:
        holders = list(
            Order.objects.filter(voucher_id=order.voucher_id)
            .exclude(pk=order.pk)
            .values_list("pk", "created_at")
        )
        since = max((at for pk, at in holders if pk < order.pk), default=None)
        until = min((at for pk, at in holders if pk > order.pk), default=None)
        voucher_match = Q(object_type="campaigns.voucher", object_id=str(order.voucher_id))
        redeemed = Redemption.objects.filter(voucher_id=order.voucher_id)
        if since is not None:
            voucher_match &= Q(occurred_at__gt=since)
            redeemed = redeemed.filter(redeemed_at__gt=since)
        if until is not None:
            voucher_match &= Q(occurred_at__lt=until)
            redeemed = redeemed.filter(redeemed_at__lt=until)
        match |= voucher_match
        redemptions = list(redeemed.order_by("id"))
    events = list(AuditEvent.objects.filter(match).order_by("occurred_at", "id"))
    timeline = [entry for event in events if (entry := _audit_entry(event))]
    for delivery in deliveries:
        timeline.extend(_delivery_entries(delivery))
    for redemption in redemptions:
        timeline.append(
            TimelineEntry(
                redemption.redeemed_at,
                "redemption",
                f"Redeemed {redemption.amount} {order.currency}",
                f"reference {redemption.reference}; balance after {redemption.balance_after}",
                redemption.actor_label,
                "ok",
                order=6,
            )
        )
    # An auto-fulfilled order's voucher is issued in the transaction that creates the order,
    # a moment before the order row and its audit event: nothing sorts before the creation.
    anchor = next((e.occurred_at for e in events if e.action == "order.create"), order.created_at)
    timeline.sort(key=lambda entry: (max(entry.at, anchor), entry.order))
    return OrderStory(timeline, deliveries, tickets, redemptions)


# --- one member --------------------------------------------------------------------------------


def ops_member_get(*, programmes: QuerySet, member_id: int) -> Member | None:
    """A member of the agent's programmes; None for a missing one and another programme's."""
    return (
        Member.objects.filter(pk=member_id, programme__in=_in(programmes))
        .select_related("programme")
        .first()
    )


def ops_member_orders(*, member: Member) -> QuerySet:
    return Order.objects.filter(member=member).select_related("campaign", "voucher").order_by("-id")


def ops_member_tickets(*, member: Member) -> QuerySet:
    return Ticket.objects.filter(member=member).select_related("order").order_by("-id")
