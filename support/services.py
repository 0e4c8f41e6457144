"""Ticket writes: opening, assignment, the status lifecycle with its SLA clock, replies and
notes, SLA policies and the breach sweep.

Every entry point is one durable transaction that locks the ticket row (`_ticket_lock`), checks
the move against TICKET_TRANSITIONS, writes the audit event and the outbox messages (events,
the member's e-mail) with the change. Of two parallel changes the second waits for the lock,
sees the first's result and is refused if its move is no longer allowed. Bad input raises a
specific error before anything is written.

Time: every service takes `now` (default `timezone.now()`), so the SLA clock can be driven
by tests and by the sweep. The clock runs in open / in progress; entering any other state
stores `paused_at`, and coming back pushes the due times still pending by the pause."""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, Value, When
from django.urls import reverse
from django.utils import timezone

from orders.models import Order
from plum import roles
from plum.actors import SYSTEM, Actor, actor_fields
from plum.errors import InvalidInputError
from plum.models import Member, Programme
from plum.selectors import programmes_for
from plum.services.audit import audit_log
from plum.services.events import event_emit
from plum.services.outbox import outbox_enqueue
from support.errors import (
    TicketAssigneeInvalidError,
    TicketClosedError,
    TicketOrderMismatchError,
    TicketReopenWindowClosedError,
)
from support.models import (
    PRIORITY_ORDER,
    SLA_RUNNING,
    TICKET_TRANSITIONS,
    SlaPolicy,
    Ticket,
    TicketMessage,
)

MAX_DESCRIPTION = 4000
MAX_MESSAGE = 8000
MAX_SLA_HOURS = 24 * 365
SWEEP_BATCH = 500

# A problem with a reward the member already paid for is more pressing than a question.
CATEGORY_PRIORITY = {
    Ticket.Category.REDEMPTION_FAILURE: Ticket.Priority.HIGH,
    Ticket.Category.CODE_NOT_WORKING: Ticket.Priority.HIGH,
    Ticket.Category.NOT_RECEIVED: Ticket.Priority.HIGH,
    Ticket.Category.WRONG_VALUE: Ticket.Priority.NORMAL,
    Ticket.Category.OTHER: Ticket.Priority.NORMAL,
}

# (breach, due field, breached field, extra condition): what the sweep checks.
BREACHES = (
    (
        "first_response",
        "first_response_due_at",
        "first_response_breached_at",
        {"first_responded_at__isnull": True},
    ),
    ("resolution", "resolution_due_at", "resolution_breached_at", {}),
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _ticket_lock(pk: int) -> Ticket:
    """The one row lock of a ticket (docs/concurrency.md): FOR NO KEY UPDATE of the ticket only."""
    return (
        Ticket.objects.select_for_update(of=("self",), no_key=True)
        .select_related("member", "order", "assignee")
        .get(pk=pk)
    )


def _event_data(ticket: Ticket) -> dict:
    return {
        "ticket_id": ticket.pk,
        "status": ticket.status,
        "priority": ticket.priority,
        "member_external_id": ticket.member.external_id,
        "booking_id": ticket.order.booking_id if ticket.order_id else None,
        "assignee": ticket.assignee.get_username() if ticket.assignee_id else None,
    }


def is_ticket_agent(user, programme_id: int) -> bool:
    """May `user` work tickets of the programme (support or manage permission on it)?"""
    if not isinstance(user, AbstractBaseUser) or not user.is_active:
        return False
    return (
        (programmes_for(user, roles.SUPPORT) | programmes_for(user, roles.MANAGE))
        .filter(pk=programme_id)
        .exists()
    )


# --- opening -----------------------------------------------------------------------------------


def _due_times(programme_id: int, priority: str, now: datetime) -> tuple:
    policy = SlaPolicy.objects.filter(programme_id=programme_id, priority=priority).first()
    if policy is None:
        return None, None
    return (
        now + timedelta(hours=policy.first_response_hours),
        now + timedelta(hours=policy.resolution_hours),
    )


def ticket_open(
    *,
    member: Member,
    order: Order | None,
    category: str,
    description: str,
    actor: Actor,
    priority: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Open a complaint ticket for `member`, optionally about one of their own orders. The
    priority defaults from the category; the due times come from the programme's SLA policy
    for that priority (none: no SLA). Audited and announced (`ticket.opened`) in the same
    transaction; bad input changes nothing."""
    now = now or timezone.now()
    description = (description or "").strip()
    errors = {}
    if category not in Ticket.Category.values:
        errors["category"] = ["Choose what went wrong."]
    if not description:
        errors["description"] = ["Tell us what happened."]
    elif len(description) > MAX_DESCRIPTION:
        errors["description"] = [f"Keep it under {MAX_DESCRIPTION} characters."]
    if priority is not None and priority not in PRIORITY_ORDER:
        errors["priority"] = [f"One of {', '.join(PRIORITY_ORDER)}."]
    if errors:
        raise InvalidInputError(fields=errors)
    if order is not None and order.member_id != member.pk:
        raise TicketOrderMismatchError()
    priority = priority or CATEGORY_PRIORITY[Ticket.Category(category)]
    with transaction.atomic(durable=True):
        first_due, resolution_due = _due_times(member.programme_id, priority, now)
        ticket = Ticket.objects.create(
            programme_id=member.programme_id,
            member=member,
            order=order,
            category=category,
            description=description,
            priority=priority,
            first_response_due_at=first_due,
            resolution_due_at=resolution_due,
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
                "resolution_due_at": [None, _iso(resolution_due)],
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


# --- status ------------------------------------------------------------------------------------


def _reopen_check(ticket: Ticket, now: datetime) -> None:
    since = ticket.closed_at if ticket.status == Ticket.Status.CLOSED else ticket.resolved_at
    if since is not None and now - since > timedelta(days=settings.SUPPORT_REOPEN_DAYS):
        raise TicketReopenWindowClosedError()


def _move(ticket: Ticket, target: str, now: datetime) -> dict:
    """Apply a checked status change to the locked `ticket` in memory, with its clock: returns
    the audit `changes`. The caller saves."""
    source = ticket.status
    TICKET_TRANSITIONS.check(source, target)
    if target == Ticket.Status.OPEN and source in (Ticket.Status.RESOLVED, Ticket.Status.CLOSED):
        _reopen_check(ticket, now)
    changes = {"status": [source, target]}
    running_before, running_after = source in SLA_RUNNING, target in SLA_RUNNING
    if running_before and not running_after:
        ticket.paused_at = now
    elif not running_before and running_after and ticket.paused_at is not None:
        pause = max(now - ticket.paused_at, timedelta(0))
        ticket.paused_seconds += int(pause.total_seconds())
        if ticket.first_response_due_at and ticket.first_responded_at is None:
            ticket.first_response_due_at += pause
        if ticket.resolution_due_at:
            ticket.resolution_due_at += pause
        changes["paused_seconds"] = [
            ticket.paused_seconds - int(pause.total_seconds()),
            ticket.paused_seconds,
        ]
        ticket.paused_at = None
    if target == Ticket.Status.RESOLVED:
        ticket.resolved_at = now
    elif target == Ticket.Status.CLOSED:
        ticket.closed_at = now
    elif target == Ticket.Status.OPEN:
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.status = target
    return changes


MOVE_FIELDS = [
    "status",
    "paused_at",
    "paused_seconds",
    "first_response_due_at",
    "resolution_due_at",
    "resolved_at",
    "closed_at",
    "updated_at",
]


def _status_changed(ticket: Ticket, changes: dict, actor: Actor, action: str) -> None:
    audit_log(actor=actor, action=action, obj=ticket, changes=changes)
    event_emit(
        event_type="ticket.status_changed",
        programme_id=ticket.programme_id,
        data={**_event_data(ticket), "previous_status": changes["status"][0]},
    )


def ticket_transition(
    *, ticket: Ticket, status: str, actor: Actor, now: datetime | None = None
) -> Ticket:
    """Move the ticket to `status` along TICKET_TRANSITIONS (InvalidTransitionError, 409,
    otherwise; reopening past settings.SUPPORT_REOPEN_DAYS: TicketReopenWindowClosedError).
    awaiting_member, resolved and closed stop the SLA clock; open and in_progress run it."""
    now = now or timezone.now()
    if status not in Ticket.Status.values:
        raise InvalidInputError(fields={"status": [f"One of {', '.join(Ticket.Status.values)}."]})
    with transaction.atomic(durable=True):
        locked = _ticket_lock(ticket.pk)
        changes = _move(locked, status, now)
        locked.save(update_fields=MOVE_FIELDS)
        action = "ticket.reopen" if status == Ticket.Status.OPEN else "ticket.transition"
        _status_changed(locked, changes, actor, action)
    return locked


def ticket_close(*, ticket: Ticket, actor: Actor, now: datetime | None = None) -> Ticket:
    return ticket_transition(ticket=ticket, status=Ticket.Status.CLOSED, actor=actor, now=now)


def ticket_reopen(*, ticket: Ticket, actor: Actor, now: datetime | None = None) -> Ticket:
    """Reopen a resolved or closed ticket within settings.SUPPORT_REOPEN_DAYS."""
    return ticket_transition(ticket=ticket, status=Ticket.Status.OPEN, actor=actor, now=now)


# --- assignment --------------------------------------------------------------------------------


def ticket_assign(
    *, ticket: Ticket, assignee: AbstractBaseUser | None, actor: Actor, now: datetime | None = None
) -> Ticket:
    """Give the ticket to an agent of its programme (None: unassign). A closed ticket cannot
    be assigned (TicketClosedError); assigning to the current assignee changes nothing."""
    if assignee is not None and not is_ticket_agent(assignee, ticket.programme_id):
        raise TicketAssigneeInvalidError(fields={"assignee": ["Not an agent of this programme."]})
    with transaction.atomic(durable=True):
        locked = _ticket_lock(ticket.pk)
        if locked.status == Ticket.Status.CLOSED:
            raise TicketClosedError()
        before = locked.assignee.get_username() if locked.assignee_id else None
        if locked.assignee_id == (assignee.pk if assignee else None):
            return locked
        locked.assignee = assignee
        locked.save(update_fields=["assignee", "updated_at"])
        after = assignee.get_username() if assignee else None
        audit_log(
            actor=actor, action="ticket.assign", obj=locked, changes={"assignee": [before, after]}
        )
        event_emit(
            event_type="ticket.assigned",
            programme_id=locked.programme_id,
            data={**_event_data(locked), "previous_assignee": before},
        )
    return locked


# --- messages ----------------------------------------------------------------------------------


def _clean_body(body: str) -> str:
    body = (body or "").strip()
    if not body:
        raise InvalidInputError(fields={"body": ["Write a message."]})
    if len(body) > MAX_MESSAGE:
        raise InvalidInputError(fields={"body": [f"Keep it under {MAX_MESSAGE} characters."]})
    return body


def _message(ticket: Ticket, kind: str, body: str, actor: Actor, now: datetime) -> TicketMessage:
    author = actor if isinstance(actor, AbstractBaseUser) else None
    return TicketMessage.objects.create(
        ticket=ticket,
        kind=kind,
        author=author,
        author_label=actor_fields(actor)["actor_label"],
        body=body,
        created_at=now,
    )


def _reply_email(ticket: Ticket, body: str) -> dict:
    link = settings.PLUM_BASE_URL + reverse("store_support:ticket", args=[ticket.pk])
    order = f" about order {ticket.order.booking_id}" if ticket.order_id else ""
    return {
        "to": [ticket.member.email],
        "subject": f"Re: your problem report #{ticket.pk}{order}",
        "text": (
            f"Hello {ticket.member.name or ticket.member.external_id},\n\n{body}\n\n"
            f"You can read and answer this conversation at {link}\n"
        ),
    }


def _messaged(ticket: Ticket, message: TicketMessage, actor: Actor, extra: dict) -> None:
    audit_log(
        actor=actor,
        action=f"ticket.{message.kind}",
        obj=ticket,
        changes={"message": [None, message.pk], **extra},
    )


def ticket_reply(
    *, ticket: Ticket, body: str, actor: Actor, now: datetime | None = None
) -> TicketMessage:
    """A reply to the member: stored, shown on the storefront and e-mailed to the member's
    address through the outbox (the kernel's `email` sender). The first reply stops the
    first-response clock; a reply to an open ticket puts it in progress. Not on a closed
    ticket (TicketClosedError)."""
    now = now or timezone.now()
    body = _clean_body(body)
    with transaction.atomic(durable=True):
        locked = _ticket_lock(ticket.pk)
        if locked.status == Ticket.Status.CLOSED:
            raise TicketClosedError()
        message = _message(locked, TicketMessage.Kind.REPLY, body, actor, now)
        extra, fields = {}, ["updated_at"]
        if locked.first_responded_at is None:
            locked.first_responded_at = now
            extra["first_responded_at"] = [None, now.isoformat()]
            fields.append("first_responded_at")
        status_changes = None
        if locked.status == Ticket.Status.OPEN:
            status_changes = _move(locked, Ticket.Status.IN_PROGRESS, now)
            fields += MOVE_FIELDS
        locked.save(update_fields=sorted(set(fields)))
        emailed = bool(locked.member.email)
        if emailed:
            outbox_enqueue(
                kind="email", payload=_reply_email(locked, body), programme_id=locked.programme_id
            )
        _messaged(locked, message, actor, {**extra, "emailed": [None, emailed]})
        if status_changes:
            _status_changed(locked, status_changes, actor, "ticket.transition")
        event_emit(
            event_type="ticket.replied",
            programme_id=locked.programme_id,
            data={**_event_data(locked), "message_id": message.pk, "kind": message.kind},
        )
    return message


def ticket_note(
    *, ticket: Ticket, body: str, actor: Actor, now: datetime | None = None
) -> TicketMessage:
    """An internal note: agents only, never shown to the member, no e-mail, no event."""
    now = now or timezone.now()
    body = _clean_body(body)
    with transaction.atomic(durable=True):
        locked = _ticket_lock(ticket.pk)
        message = _message(locked, TicketMessage.Kind.NOTE, body, actor, now)
        _messaged(locked, message, actor, {})
    return message


def ticket_member_reply(
    *, ticket: Ticket, body: str, actor: Actor, now: datetime | None = None
) -> TicketMessage:
    """The member answers on the storefront (the caller has checked it is their ticket). A
    ticket awaiting the member goes back in progress (its clock resumes); a resolved or closed
    one reopens within settings.SUPPORT_REOPEN_DAYS (TicketReopenWindowClosedError after)."""
    now = now or timezone.now()
    body = _clean_body(body)
    with transaction.atomic(durable=True):
        locked = _ticket_lock(ticket.pk)
        target = {
            Ticket.Status.AWAITING_MEMBER: Ticket.Status.IN_PROGRESS,
            Ticket.Status.RESOLVED: Ticket.Status.OPEN,
            Ticket.Status.CLOSED: Ticket.Status.OPEN,
        }.get(locked.status)
        status_changes = _move(locked, target, now) if target else None
        message = _message(locked, TicketMessage.Kind.MEMBER_REPLY, body, actor, now)
        if status_changes:
            locked.save(update_fields=MOVE_FIELDS)
        else:
            locked.save(update_fields=["updated_at"])
        _messaged(locked, message, actor, {})
        if status_changes:
            action = "ticket.reopen" if target == Ticket.Status.OPEN else "ticket.transition"
            _status_changed(locked, status_changes, actor, action)
        event_emit(
            event_type="ticket.replied",
            programme_id=locked.programme_id,
            data={**_event_data(locked), "message_id": message.pk, "kind": message.kind},
        )
    return message


# --- SLA ---------------------------------------------------------------------------------------


def sla_policy_set(
    *,
    programme: Programme,
    priority: str,
    first_response_hours: int,
    resolution_hours: int,
    actor: Actor,
) -> SlaPolicy:
    """Create or change the programme's policy for one priority. Applies to tickets opened
    from now on (due times are fixed at creation). Audited."""
    errors = {}
    if priority not in PRIORITY_ORDER:
        errors["priority"] = [f"One of {', '.join(PRIORITY_ORDER)}."]
    for name, value in (
        ("first_response_hours", first_response_hours),
        ("resolution_hours", resolution_hours),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_SLA_HOURS:
            errors[name] = [f"A whole number of hours from 1 to {MAX_SLA_HOURS}."]
    if not errors and resolution_hours < first_response_hours:
        errors["resolution_hours"] = ["At least the first-response time."]
    if errors:
        raise InvalidInputError(fields=errors)
    # Not durable: the admin's change form already runs in a transaction.
    with transaction.atomic():
        policy = (
            SlaPolicy.objects.select_for_update()
            .filter(programme=programme, priority=priority)
            .first()
        )
        before = [policy.first_response_hours, policy.resolution_hours] if policy else [None, None]
        if policy is None:
            try:
                # A parallel first save of the same policy loses on the unique key: the
                # savepoint keeps this transaction alive and the winner's row is changed below.
                with transaction.atomic():
                    policy = SlaPolicy.objects.create(
                        programme=programme,
                        priority=priority,
                        first_response_hours=first_response_hours,
                        resolution_hours=resolution_hours,
                    )
            except IntegrityError:
                policy = SlaPolicy.objects.select_for_update().get(
                    programme=programme, priority=priority
                )
                before = [policy.first_response_hours, policy.resolution_hours]
        if before != [None, None]:
            policy.first_response_hours = first_response_hours
            policy.resolution_hours = resolution_hours
            policy.save(update_fields=["first_response_hours", "resolution_hours", "updated_at"])
        audit_log(
            actor=actor,
            action="sla_policy.set",
            obj=policy,
            changes={
                "priority": [None, priority],
                "first_response_hours": [before[0], first_response_hours],
                "resolution_hours": [before[1], resolution_hours],
            },
        )
    return policy


def _raised(priority: str) -> str:
    index = PRIORITY_ORDER.index(priority)
    return PRIORITY_ORDER[min(index + 1, len(PRIORITY_ORDER) - 1)]


RAISE_PRIORITY = Case(
    *[When(priority=p, then=Value(_raised(p))) for p in PRIORITY_ORDER],
    default=Value(PRIORITY_ORDER[-1]),
)


def _breach_filter(due_field: str, breached_field: str, extra: dict, now: datetime) -> dict:
    return {
        "status__in": SLA_RUNNING,
        "paused_at__isnull": True,
        f"{due_field}__lte": now,
        f"{breached_field}__isnull": True,
        **extra,
    }


def tickets_sla_sweep(*, now: datetime | None = None) -> int:
    """Mark every running ticket past a due time as breached, once per kind (first response,
    resolution), raise its priority one step (capped at urgent), set `escalated` and emit
    `ticket.sla_breached` (delivered to the programme's webhooks and Slack / Teams channels).
    The mark is a conditional UPDATE ... WHERE <breached_at> IS NULL in the ticket's own short
    transaction: of parallel sweeps one wins each breach, the others find nothing. Paused
    (awaiting member), resolved and closed tickets never breach. Returns breaches marked."""
    now = now or timezone.now()
    marked = 0
    for breach, due_field, breached_field, extra in BREACHES:
        conditions = _breach_filter(due_field, breached_field, extra, now)
        ids = list(
            Ticket.objects.filter(**conditions)
            .order_by("pk")
            .values_list("pk", flat=True)[:SWEEP_BATCH]
        )
        for pk in ids:
            with transaction.atomic(durable=True):
                # Locked first, so the priority it reads is the one the UPDATE raises (a
                # parallel sweep marking the other breach of this ticket waits here).
                before = (
                    Ticket.objects.select_for_update()
                    .filter(pk=pk)
                    .values("priority", "escalated")
                    .first()
                )
                updated = Ticket.objects.filter(pk=pk, **conditions).update(
                    **{breached_field: now},
                    priority=RAISE_PRIORITY,
                    escalated=True,
                    updated_at=now,
                )
                if not updated:
                    continue
                ticket = Ticket.objects.select_related("member", "order", "assignee").get(pk=pk)
                audit_log(
                    actor=SYSTEM,
                    action="ticket.sla_breach",
                    obj=ticket,
                    changes={
                        breached_field: [None, now.isoformat()],
                        "priority": [before["priority"], ticket.priority],
                        "escalated": [before["escalated"], True],
                    },
                )
                event_emit(
                    event_type="ticket.sla_breached",
                    programme_id=ticket.programme_id,
                    data={
                        **_event_data(ticket),
                        "breach": breach,
                        "due_at": getattr(ticket, due_field).isoformat(),
                        "previous_priority": before["priority"],
                    },
                )
                marked += 1
    return marked
