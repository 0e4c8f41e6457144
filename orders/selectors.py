"""Order reads, scoped to what the principal may see. Test-mode API clients see test orders
only, live clients live orders only; staff see both (test ones marked)."""

from django.db.models import Count, Q, QuerySet

from orders.models import Event, Order, Payout
from plum import roles
from plum.models import ApiClient
from plum.selectors import Principal, programmes_for, scoped


def order_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    orders = scoped(
        Order.objects.select_related("programme", "campaign", "member", "voucher"),
        principal,
        perm,
    )
    if isinstance(principal, ApiClient):
        orders = orders.filter(is_test=principal.is_test)
    return orders


def order_get_for(*, principal: Principal, booking_id: str, perm: str = roles.VIEW) -> Order | None:
    """One order by booking id; None for a missing order and one outside scope alike."""
    booking_id = (booking_id or "").strip().upper()
    return order_list_for(principal=principal, perm=perm).filter(booking_id=booking_id).first()


def order_approval_queue_for(*, principal: Principal, perm: str = roles.MANAGE) -> QuerySet:
    return order_list_for(principal=principal, perm=perm).filter(
        status=Order.Status.PENDING, approval_state=Order.ApprovalState.PENDING
    )


def order_counts_by_campaign_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Orders per campaign by status, read live from the table (one grouped query): rows of
    campaign_id, pending, awaiting_approval, completed, cancelled, total."""
    pending = Q(status=Order.Status.PENDING)
    return (
        order_list_for(principal=principal, perm=perm)
        .select_related(None)
        .order_by("campaign_id")
        .values("campaign_id")
        .annotate(
            pending=Count("id", filter=pending),
            awaiting_approval=Count(
                "id", filter=pending & Q(approval_state=Order.ApprovalState.PENDING)
            ),
            completed=Count("id", filter=Q(status=Order.Status.COMPLETED)),
            cancelled=Count("id", filter=Q(status=Order.Status.CANCELLED)),
            total=Count("id"),
        )
    )


def payout_list_for(*, principal: Principal, perm: str = roles.FINANCE_PERM) -> QuerySet:
    """Payouts of the programmes the principal holds `perm` on (Finance). Payouts are live
    money: a test-mode API client sees none."""
    if isinstance(principal, ApiClient) and principal.is_test:
        return Payout.objects.none()
    return scoped(
        Payout.objects.select_related("programme", "merchant").exclude(status=Payout.Status.DRAFT),
        principal,
        perm,
    )


def delivery_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Deliveries of the principal's programmes; API clients see their mode's (test/live) only."""
    from orders.models import Delivery

    deliveries = scoped(
        Delivery.objects.select_related("order", "order__member", "campaign", "programme"),
        principal,
        perm,
    )
    if isinstance(principal, ApiClient):
        deliveries = deliveries.filter(is_test=principal.is_test)
    return deliveries


def delivery_resendable_for(*, principal: Principal) -> QuerySet:
    """Deliveries a principal may resend: programmes it manages or supports."""
    from orders.models import Delivery

    if isinstance(principal, ApiClient):
        return delivery_list_for(principal=principal)
    programmes = programmes_for(principal, roles.MANAGE) | programmes_for(principal, roles.SUPPORT)
    return Delivery.objects.select_related("order", "programme").filter(
        programme__in=programmes.values("pk")
    )


def event_list_for(*, principal: Principal, perm: str = roles.VIEW) -> QuerySet:
    """Events of the principal's programmes; an API client sees the events it sent only."""
    events = scoped(Event.objects.select_related("programme", "member"), principal, perm)
    if isinstance(principal, ApiClient):
        events = events.filter(api_client=principal)
    return events


def event_get_for(*, principal: Principal, event_id: str) -> Event | None:
    """An event by the caller's event id; None for a missing one and one outside scope alike.
    Event ids are unique per API client: a staff user gets the earliest event with this id."""
    return event_list_for(principal=principal).filter(event_id=event_id).order_by("id").first()
