"""The storefront's "Report a problem", the member's own tickets and their conversation
(replies from support, never the internal notes), where the member can answer. Mounted under /store/
next to the orders storefront; support imports orders, never the other way round."""

from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from orders.selectors import store_order_get_for
from orders.views.access import member_required
from plum.errors import InvalidInputError, PlumError
from support.forms import MessageForm, TicketForm
from support.selectors import (
    ticket_get_for_member,
    ticket_list_for_member,
    ticket_messages_for_member,
)
from support.services import ticket_member_reply, ticket_open


@require_http_methods(["GET", "POST"])
@member_required
def report_problem(request, booking_id, *, member):
    order = store_order_get_for(member=member, booking_id=booking_id)
    if order is None:
        raise Http404("No such order.")
    form = TicketForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            ticket = ticket_open(
                member=member,
                order=order,
                category=form.cleaned_data["category"],
                description=form.cleaned_data["description"],
                actor=request.user,
            )
        except InvalidInputError as exc:
            for field, messages in exc.fields.items():
                for message in messages:
                    form.add_error(field if field in form.fields else None, message)
        else:
            return redirect(f"{reverse('store_support:tickets')}?opened={ticket.pk}")
    tickets = list(ticket_list_for_member(member=member).filter(order=order)[:20])
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "store/report.html",
        {"member": member, "order": order, "form": form, "tickets": tickets},
        status=status,
    )


@require_GET
@member_required
def ticket_list(request, *, member):
    try:
        opened = int(request.GET.get("opened", "0"))
    except ValueError:
        opened = 0
    tickets = list(ticket_list_for_member(member=member)[:50])
    return render(
        request,
        "store/tickets.html",
        {"member": member, "tickets": tickets, "opened": opened, "nav": "tickets"},
    )


def _ticket_page(request, member, ticket, *, form=None, status=200, error=""):
    return render(
        request,
        "store/ticket.html",
        {
            "member": member,
            "ticket": ticket,
            "messages_list": list(ticket_messages_for_member(ticket=ticket)),
            "form": form or MessageForm(),
            "error": error,
            "nav": "tickets",
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@member_required
def ticket_detail(request, ticket_id, *, member):
    """The member's ticket with support's replies; a POST is the member's answer (a ticket
    awaiting them goes back to support; a resolved or closed one reopens within the window)."""
    ticket = ticket_get_for_member(member=member, ticket_id=ticket_id)
    if ticket is None:
        raise Http404("No such ticket.")
    if request.method == "GET":
        return _ticket_page(request, member, ticket)
    form = MessageForm(request.POST)
    if not form.is_valid():
        return _ticket_page(request, member, ticket, form=form, status=400)
    try:
        ticket_member_reply(ticket=ticket, body=form.cleaned_data["body"], actor=request.user)
    except PlumError as exc:
        ticket.refresh_from_db()
        return _ticket_page(
            request, member, ticket, form=form, status=exc.status, error=exc.message
        )
    return redirect("store_support:ticket", ticket_id=ticket.pk)
