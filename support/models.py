"""Complaint tickets, their messages and the SLA policies they are measured against.

A ticket comes from a member (storefront "Report a problem"), an agent (ops portal) or an
external system (API). Its due times are computed on creation from the programme's SlaPolicy for
its priority; while it awaits the member the clock is paused. Messages are append-only (a
Postgres trigger refuses UPDATE and DELETE). One declared table of status transitions; every
write goes through `support.services`."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from orders.models import Order
from plum.models import Member, Programme
from plum.statemachine import Transitions

# open -> in progress -> awaiting member -> resolved -> closed; an agent may also resolve or
# close straight from open / in progress, and a member's reply reopens (awaiting -> in progress,
# resolved -> open). A resolved or closed ticket is reopened (-> open) only within
# settings.SUPPORT_REOPEN_DAYS of its resolution or closure (support.services.ticket_reopen).
TICKET_TRANSITIONS = Transitions(
    "ticket",
    {
        "open": ["in_progress", "resolved", "closed"],
        "in_progress": ["awaiting_member", "resolved", "closed"],
        "awaiting_member": ["in_progress", "resolved", "closed"],
        "resolved": ["closed", "open"],
        "closed": ["open"],
    },
)
# The states in which the SLA clock runs (awaiting_member pauses it; resolved/closed stop it).
SLA_RUNNING = ("open", "in_progress")
PRIORITY_ORDER = ("low", "normal", "high", "urgent")


class SlaPolicy(models.Model):
    """How fast a programme promises to answer and to resolve a ticket of one priority."""

    programme = models.ForeignKey(Programme, on_delete=models.CASCADE, related_name="sla_policies")
    priority = models.CharField(max_length=16, choices=[(p, p) for p in PRIORITY_ORDER])
    first_response_hours = models.PositiveIntegerField()
    resolution_hours = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"
        ordering = ["programme_id", "id"]
        constraints = [
            models.UniqueConstraint(fields=["programme", "priority"], name="slapolicy_unique"),
            models.CheckConstraint(
                condition=Q(priority__in=list(PRIORITY_ORDER)), name="slapolicy_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(first_response_hours__gt=0, resolution_hours__gt=0),
                name="slapolicy_hours_positive",
            ),
            models.CheckConstraint(
                condition=Q(resolution_hours__gte=models.F("first_response_hours")),
                name="slapolicy_resolution_after_response",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.priority}: respond in {self.first_response_hours} h, "
            f"resolve in {self.resolution_hours} h"
        )


class Ticket(models.Model):
    class Category(models.TextChoices):
        REDEMPTION_FAILURE = "redemption_failure", "The redemption failed"
        CODE_NOT_WORKING = "code_not_working", "The code does not work"
        NOT_RECEIVED = "not_received", "I did not receive my reward"
        WRONG_VALUE = "wrong_value", "The value is wrong"
        OTHER = "other", "Something else"

    class Priority(models.TextChoices):
        LOW = "low"
        NORMAL = "normal"
        HIGH = "high"
        URGENT = "urgent"

    class Status(models.TextChoices):
        OPEN = "open"
        IN_PROGRESS = "in_progress", "In progress"
        AWAITING_MEMBER = "awaiting_member", "Awaiting your reply"
        RESOLVED = "resolved"
        CLOSED = "closed"

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="tickets")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="tickets")
    order = models.ForeignKey(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="tickets"
    )
    category = models.CharField(max_length=32, choices=Category.choices)
    description = models.TextField(max_length=4000)
    priority = models.CharField(max_length=16, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="assigned_tickets",
    )
    # SLA: null due times = no policy for the programme and priority at creation = no SLA.
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    first_responded_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_seconds = models.PositiveIntegerField(default=0)
    first_response_breached_at = models.DateTimeField(null=True, blank=True)
    resolution_breached_at = models.DateTimeField(null=True, blank=True)
    escalated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    category__in=[
                        "redemption_failure",
                        "code_not_working",
                        "not_received",
                        "wrong_value",
                        "other",
                    ]
                ),
                name="ticket_category_valid",
            ),
            models.CheckConstraint(
                condition=Q(priority__in=["low", "normal", "high", "urgent"]),
                name="ticket_priority_valid",
            ),
            models.CheckConstraint(
                condition=Q(
                    status__in=["open", "in_progress", "awaiting_member", "resolved", "closed"]
                ),
                name="ticket_status_valid",
            ),
            models.CheckConstraint(condition=~Q(description=""), name="ticket_description_set"),
            models.CheckConstraint(
                condition=~Q(status="closed") | Q(closed_at__isnull=False),
                name="ticket_closed_has_time",
            ),
            # The clock runs in open / in progress only; paused_at marks when it stopped.
            models.CheckConstraint(
                condition=~Q(status__in=SLA_RUNNING) | Q(paused_at__isnull=True),
                name="ticket_running_not_paused",
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "status", "-id"], name="ticket_queue_idx"),
            models.Index(fields=["member", "-id"], name="ticket_member_idx"),
            models.Index(fields=["order"], name="ticket_order_idx"),
            models.Index(fields=["assignee", "status"], name="ticket_assignee_idx"),
            # The sweep's scan: running tickets with a due time.
            models.Index(
                fields=["resolution_due_at"],
                name="ticket_sla_due_idx",
                condition=Q(status__in=SLA_RUNNING),
            ),
        ]

    def __str__(self) -> str:
        return f"Ticket #{self.pk} ({self.status})"

    @property
    def is_breached(self) -> bool:
        return bool(self.first_response_breached_at or self.resolution_breached_at)

    @property
    def is_open(self) -> bool:
        return self.status not in ("resolved", "closed")


class TicketMessage(models.Model):
    """One message on a ticket: a reply to the member (e-mailed), an internal note (never shown
    to the member) or the member's own reply. Append-only: a trigger refuses UPDATE and DELETE."""

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply to the member"
        NOTE = "note", "Internal note"
        MEMBER_REPLY = "member_reply", "Member's reply"

    ticket = models.ForeignKey(Ticket, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    author_label = models.CharField(max_length=200, blank=True)
    body = models.TextField(max_length=8000)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["reply", "note", "member_reply"]),
                name="ticketmessage_kind_valid",
            ),
            models.CheckConstraint(condition=~Q(body=""), name="ticketmessage_body_set"),
        ]
        indexes = [models.Index(fields=["ticket", "id"], name="ticketmessage_ticket_idx")]

    def __str__(self) -> str:
        return f"{self.kind} on ticket #{self.ticket_id}"
