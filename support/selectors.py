"""Ticket reads."""

from django.db.models import QuerySet

from plum.models import Member
from support.models import Ticket


def ticket_list_for_member(*, member: Member) -> QuerySet:
    """The member's own tickets, newest first."""
    return Ticket.objects.filter(member=member).select_related("order")
