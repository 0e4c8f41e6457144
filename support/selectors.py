"""Ticket reads, each scoped to what the principal may see: a member their own tickets (and
only the messages meant for them), an agent the programmes of `ops.access.agent_programmes`
(passed in as `programmes`), an API client or staff user its programmes."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from guardian.shortcuts import get_users_with_perms

from plum import roles
from plum.models import Member, Programme
from plum.selectors import Principal, programmes_for, scoped
from support.models import SLA_RUNNING, SlaPolicy, Ticket, TicketMessage

TICKET_RELATED = ("member", "member__programme", "order", "assignee", "programme")
QUEUES = {
    "mine": "My tickets",
    "unassigned": "Unassigned",
    "breaching": "Breaching soon",
    "breached": "Breached",
    "open": "All open",
    "all": "All",
}
OPEN_STATUSES = ("open", "in_progress", "awaiting_member")


# --- the member ----------------------------------------------------------------------------------


def ticket_list_for_member(*, member: Member) -> QuerySet:
    """The member's own tickets, newest first."""
    return Ticket.objects.filter(member=member).select_related("order")


def ticket_get_for_member(*, member: Member, ticket_id: int) -> Ticket | None:
    return ticket_list_for_member(member=member).filter(pk=ticket_id).first()


def ticket_messages_for_member(*, ticket: Ticket) -> QuerySet:
    """Replies and the member's own messages: never the internal notes."""
    return TicketMessage.objects.filter(ticket=ticket).exclude(kind=TicketMessage.Kind.NOTE)


# --- agents (the ops portal) ---------------------------------------------------------------------


def ops_ticket_list(*, programmes: QuerySet) -> QuerySet:
    return Ticket.objects.filter(programme__in=programmes.values("pk")).select_related(
        *TICKET_RELATED
    )


def ops_ticket_get(*, programmes: QuerySet, ticket_id: int) -> Ticket | None:
    """The ticket if it is in one of the agent's programmes; None for missing and forbidden."""
    return ops_ticket_list(programmes=programmes).filter(pk=ticket_id).first()


def ticket_messages(*, ticket: Ticket) -> QuerySet:
    """Every message of the ticket, notes included (agents only)."""
    return TicketMessage.objects.filter(ticket=ticket).select_related("author")


def _breaching_soon(now: datetime) -> Q:
    soon = now + timedelta(hours=settings.SUPPORT_BREACHING_SOON_HOURS)
    first = Q(
        first_responded_at__isnull=True,
        first_response_breached_at__isnull=True,
        first_response_due_at__lte=soon,
    )
    resolution = Q(resolution_breached_at__isnull=True, resolution_due_at__lte=soon)
    return Q(status__in=SLA_RUNNING) & (first | resolution)


def _breached() -> Q:
    return Q(first_response_breached_at__isnull=False) | Q(resolution_breached_at__isnull=False)


def ticket_queue(*, tickets: QuerySet, queue: str, user, now: datetime | None = None) -> QuerySet:
    """One of QUEUES over an already scoped ticket queryset. Breach queues list open tickets
    only (a resolved ticket's breach is history); breaching soon is ordered by due time."""
    now = now or timezone.now()
    if queue == "mine":
        return tickets.filter(assignee=user, status__in=OPEN_STATUSES).order_by("-id")
    if queue == "unassigned":
        return tickets.filter(assignee__isnull=True, status__in=OPEN_STATUSES).order_by("id")
    if queue == "breaching":
        return (
            tickets.filter(_breaching_soon(now))
            .exclude(_breached())
            .order_by("resolution_due_at", "id")
        )
    if queue == "breached":
        return tickets.filter(_breached(), status__in=OPEN_STATUSES).order_by("-id")
    if queue == "open":
        return tickets.filter(status__in=OPEN_STATUSES).order_by("-id")
    return tickets.order_by("-id")


def ticket_status_counts(*, tickets: QuerySet) -> dict[str, int]:
    """{status: count} over a scoped queryset, every status present (one query)."""
    counts = dict.fromkeys(Ticket.Status.values, 0)
    for row in tickets.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def ticket_agents(*, programme: Programme) -> list:
    """Active users who may work the programme's tickets (support or manage on it; platform
    admins are not listed: they hold it globally), by username."""
    users = get_users_with_perms(
        programme,
        only_with_perms_in=[roles.SUPPORT.split(".")[1], roles.MANAGE.split(".")[1]],
        with_group_users=True,
        with_superusers=False,
    )
    return list(
        get_user_model()
        .objects.filter(pk__in=[u.pk for u in users], is_active=True)
        .order_by("username")
    )


# --- API clients and staff -----------------------------------------------------------------------


def ticket_programmes_for(principal: Principal) -> QuerySet:
    """Programmes whose tickets the principal works: support or manage permission (an API
    client: its programmes; its `support` scope is checked by the API layer)."""
    return (
        programmes_for(principal, roles.SUPPORT) | programmes_for(principal, roles.MANAGE)
    ).distinct()


def ticket_list_for(*, principal: Principal) -> QuerySet:
    return Ticket.objects.filter(
        programme__in=ticket_programmes_for(principal).values("pk")
    ).select_related(*TICKET_RELATED)


def ticket_get_for(*, principal: Principal, ticket_id: int) -> Ticket | None:
    return ticket_list_for(principal=principal).filter(pk=ticket_id).first()


def sla_policy_list_for(*, principal: Principal) -> QuerySet:
    return scoped(SlaPolicy.objects.select_related("programme"), principal, roles.MANAGE)
