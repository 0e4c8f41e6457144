"""Ticket writes. Only opening exists yet (the storefront's "Report a problem"); agents'
transitions, SLAs and the portal belong to the support issue (#8)."""

from django.db import transaction

from orders.models import Order
from plum.actors import Actor
from plum.errors import InvalidInputError
from plum.models import Member
from plum.services.audit import audit_log
from plum.services.events import event_emit
from support.errors import TicketOrderMismatchError
from support.models import Ticket

MAX_DESCRIPTION = 4000

# A problem with a reward the member already paid for is more pressing than a question.
CATEGORY_PRIORITY = {
    Ticket.Category.REDEMPTION_FAILURE: Ticket.Priority.HIGH,
    Ticket.Category.CODE_NOT_WORKING: Ticket.Priority.HIGH,
    Ticket.Category.NOT_RECEIVED: Ticket.Priority.HIGH,
    Ticket.Category.WRONG_VALUE: Ticket.Priority.NORMAL,
    Ticket.Category.OTHER: Ticket.Priority.NORMAL,
}


def ticket_open(
    *, member: Member, order: Order | None, category: str, description: str, actor: Actor
) -> Ticket:
    """Open a complaint ticket for `member`, optionally about one of their own orders. Audited
    and announced (`ticket.opened`) in the same transaction; bad input changes nothing."""
    description = (description or "").strip()
    errors = {}
    if category not in Ticket.Category.values:
        errors["category"] = ["Choose what went wrong."]
    if not description:
        errors["description"] = ["Tell us what happened."]
    elif len(description) > MAX_DESCRIPTION:
        errors["description"] = [f"Keep it under {MAX_DESCRIPTION} characters."]
    if errors:
        raise InvalidInputError(fields=errors)
    if order is not None and order.member_id != member.pk:
        raise TicketOrderMismatchError()
    with transaction.atomic(durable=True):
        ticket = Ticket.objects.create(
            programme_id=member.programme_id,
            member=member,
            order=order,
            category=category,
            description=description,
            priority=CATEGORY_PRIORITY[Ticket.Category(category)],
        )
        audit_log(
            actor=actor,
            action="ticket.open",
            obj=ticket,
            changes={
                "status": [None, ticket.status],
                "category": [None, category],
                "priority": [None, ticket.priority],
                "order": [None, order.booking_id if order else None],
            },
        )
        event_emit(
            event_type="ticket.opened",
            programme_id=ticket.programme_id,
            data={
                "ticket_id": ticket.pk,
                "category": category,
                "priority": ticket.priority,
                "member_external_id": member.external_id,
                "booking_id": order.booking_id if order else None,
            },
        )
    return ticket
