"""Ticket pages of the ops portal (mounted at /ops/tickets/, URL names `ops:tickets_*`): the
queues with counts per status, the ticket with its messages, and the agent's actions (assign,
status, reply, note) plus opening a ticket for a member.

Every ticket, member and order is looked up within `agent_programmes(user)`: another
programme's is the same 404 as a missing one. Writes go through support.services, audited with
the agent as actor; a refusal (bad transition, closed ticket, empty message) changes nothing and
is answered with the ticket page, the reason in words and its 4xx status."""

import re

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ops.access import agent_required
from ops.selectors import ops_member_get, ops_order_get
from plum.errors import PlumError
from support.errors import TicketAssigneeInvalidError
from support.forms import AgentTicketForm, MessageForm
from support.models import TICKET_TRANSITIONS, Ticket
from support.selectors import (
    QUEUES,
    ops_ticket_get,
    ops_ticket_list,
    ticket_agents,
    ticket_messages,
    ticket_queue,
    ticket_status_counts,
)
from support.services import (
    is_ticket_agent,
    ticket_assign,
    ticket_note,
    ticket_open,
    ticket_reply,
    ticket_transition,
)

PAGE_SIZE = 25
STATUS_ACTIONS = {
    "in_progress": "Start work",
    "awaiting_member": "Wait for the member",
    "resolved": "Resolve",
    "closed": "Close",
    "open": "Reopen",
}


def _ticket_or_404(programmes, ticket_id) -> Ticket:
    ticket = ops_ticket_get(programmes=programmes, ticket_id=ticket_id)
    if ticket is None:
        raise Http404("No such ticket.")
    return ticket


@require_GET
@never_cache
@agent_required
def queue(request, *, programmes):
    name = request.GET.get("queue") or "mine"
    if name not in QUEUES:
        name = "mine"
    tickets = ops_ticket_list(programmes=programmes)
    rows = ticket_queue(tickets=tickets, queue=name, user=request.user)
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "ops/tickets/queue.html",
        {
            "nav": "tickets",
            "queue": name,
            "queues": QUEUES,
            "page": page,
            "counts": ticket_status_counts(tickets=tickets),
            "statuses": Ticket.Status,
        },
    )


def _detail(request, ticket, *, status=200, error="", reply_form=None, note_form=None):
    transitions = [
        (target, STATUS_ACTIONS[target])
        for target in STATUS_ACTIONS
        if TICKET_TRANSITIONS.allowed(ticket.status, target)
    ]
    return render(
        request,
        "ops/tickets/detail.html",
        {
            "nav": "tickets",
            "ticket": ticket,
            "messages_list": list(ticket_messages(ticket=ticket)),
            "agents": ticket_agents(programme=ticket.programme),
            "transitions": transitions,
            "reply_form": reply_form or MessageForm(prefix="reply"),
            "note_form": note_form or MessageForm(prefix="note"),
            "error": error,
        },
        status=status,
    )


@require_GET
@never_cache
@agent_required
def detail(request, ticket_id, *, programmes):
    return _detail(request, _ticket_or_404(programmes, ticket_id))


def _refused(request, ticket, exc: PlumError, **forms):
    ticket.refresh_from_db()
    return _detail(request, ticket, status=exc.status, error=f"{exc.message} ({exc.code})", **forms)


@require_POST
@never_cache
@agent_required
def assign(request, ticket_id, *, programmes):
    """`assignee` = "me", a user id of an agent of the programme, or "" to unassign."""
    ticket = _ticket_or_404(programmes, ticket_id)
    raw = request.POST.get("assignee", "")
    if raw == "me":
        assignee = request.user
    elif raw == "":
        assignee = None
    else:
        assignee = (
            get_user_model().objects.filter(pk=int(raw)).first()
            if re.fullmatch(r"[0-9]{1,18}", raw)
            else None
        )
        if assignee is None or not is_ticket_agent(assignee, ticket.programme_id):
            # Also for a user who exists elsewhere: who is an agent of what is not disclosed.
            return _refused(request, ticket, TicketAssigneeInvalidError())
    try:
        ticket = ticket_assign(ticket=ticket, assignee=assignee, actor=request.user)
    except PlumError as exc:
        return _refused(request, ticket, exc)
    who = ticket.assignee.get_username() if ticket.assignee_id else "nobody"
    messages.success(request, f"Ticket #{ticket.pk} is assigned to {who}.")
    return redirect("ops:tickets_detail", ticket_id=ticket.pk)


@require_POST
@never_cache
@agent_required
def status(request, ticket_id, *, programmes):
    ticket = _ticket_or_404(programmes, ticket_id)
    try:
        ticket = ticket_transition(
            ticket=ticket, status=request.POST.get("status", ""), actor=request.user
        )
    except PlumError as exc:
        return _refused(request, ticket, exc)
    messages.success(request, f"Ticket #{ticket.pk} is now {ticket.get_status_display().lower()}.")
    return redirect("ops:tickets_detail", ticket_id=ticket.pk)


def _message_view(request, programmes, ticket_id, *, kind):
    ticket = _ticket_or_404(programmes, ticket_id)
    form = MessageForm(request.POST, prefix=kind)
    forms = {f"{kind}_form": form}
    if not form.is_valid():
        return _detail(request, ticket, status=400, error="Write a message first.", **forms)
    service = ticket_reply if kind == "reply" else ticket_note
    try:
        service(ticket=ticket, body=form.cleaned_data["body"], actor=request.user)
    except PlumError as exc:
        return _refused(request, ticket, exc, **forms)
    if kind == "reply":
        sent = "and e-mailed to the member" if ticket.member.email else "(no e-mail on file)"
        messages.success(request, f"Reply sent {sent}.")
    else:
        messages.success(request, "Note added (agents only).")
    return redirect("ops:tickets_detail", ticket_id=ticket.pk)


@require_POST
@never_cache
@agent_required
def reply(request, ticket_id, *, programmes):
    return _message_view(request, programmes, ticket_id, kind="reply")


@require_POST
@never_cache
@agent_required
def note(request, ticket_id, *, programmes):
    return _message_view(request, programmes, ticket_id, kind="note")


@require_http_methods(["GET", "POST"])
@never_cache
@agent_required
def new(request, *, programmes):
    """Open a ticket for a member (?member=<id>), optionally about one of their orders
    (?order=<booking id>)."""
    member_id = request.GET.get("member", "")
    member = (
        ops_member_get(programmes=programmes, member_id=int(member_id))
        if re.fullmatch(r"[0-9]{1,18}", member_id)
        else None
    )
    order = None
    if request.GET.get("order"):
        order = ops_order_get(programmes=programmes, booking_id=request.GET["order"])
        if order is None:
            raise Http404("No such order.")
        member = member or order.member
        if order.member_id != member.pk:
            raise Http404("No such order.")
    if member is None:
        raise Http404("No such member.")
    form = AgentTicketForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            ticket = ticket_open(
                member=member,
                order=order,
                category=form.cleaned_data["category"],
                description=form.cleaned_data["description"],
                priority=form.cleaned_data["priority"] or None,
                actor=request.user,
            )
        except PlumError as exc:
            for field, errors in exc.fields.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, f"Ticket #{ticket.pk} opened.")
            return redirect("ops:tickets_detail", ticket_id=ticket.pk)
    return render(
        request,
        "ops/tickets/new.html",
        {"nav": "tickets", "member": member, "order": order, "form": form},
        status=400 if request.method == "POST" else 200,
    )
