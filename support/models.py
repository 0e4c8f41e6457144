"""Complaint tickets: the seed of the support issue (#8). A member opens one on an order from the
storefront ("Report a problem"); agents will work them in the ops portal (not built yet: no SLA,
no portal, no assignment). One declared table of status transitions; every write goes through
`support.services`."""

from django.db import models
from django.db.models import Q

from orders.models import Order
from plum.models import Member, Programme
from plum.statemachine import Transitions

# open -> in progress -> awaiting member -> resolved -> closed; an agent may also resolve or
# close straight from open / in progress, and a member's reply reopens (awaiting -> in progress,
# resolved -> open).
TICKET_TRANSITIONS = Transitions(
    "ticket",
    {
        "open": ["in_progress", "resolved", "closed"],
        "in_progress": ["awaiting_member", "resolved", "closed"],
        "awaiting_member": ["in_progress", "resolved", "closed"],
        "resolved": ["closed", "open"],
        "closed": [],
    },
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
        ]
        indexes = [
            models.Index(fields=["programme", "status", "-id"], name="ticket_queue_idx"),
            models.Index(fields=["member", "-id"], name="ticket_member_idx"),
            models.Index(fields=["order"], name="ticket_order_idx"),
        ]

    def __str__(self) -> str:
        return f"Ticket #{self.pk} ({self.status})"
