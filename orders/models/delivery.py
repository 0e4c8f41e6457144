"""Deliveries: one send of an order's voucher to its member, by e-mail, SMS or WhatsApp, riding
on the outbox; and every attempt a delivery made.

Invariants held by the database:
- at most one first (non-resend) delivery per order, so queueing twice sends once;
- at most one open (pending or processing) delivery per order, so a resend cannot race another
  send of the same order;
- a provider message id names one delivery per provider (receipts find it by that id);
- a delivered delivery has its time, a failed one its time and a reason."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.models import Campaign
from plum.models import ApiClient, Channel, OutboxMessage, Programme
from plum.statemachine import Transitions

# pending -> processing (an attempt failed transiently and will be retried) -> delivered or
# failed. A provider's receipt may later turn delivered into failed (the handset never got it).
# A failed delivery stays failed: a resend is a new delivery.
DELIVERY_TRANSITIONS = Transitions(
    "delivery",
    {
        "pending": ["processing", "delivered", "failed"],
        "processing": ["delivered", "failed"],
        "delivered": ["failed"],
        "failed": [],
    },
)


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        DELIVERED = "delivered"
        FAILED = "failed"

    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="deliveries")
    # Copied from the order: the admin's and the API's filters and programme scoping.
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="+")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    destination = models.CharField(
        max_length=254, blank=True, help_text="The e-mail address or phone number used."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    outbox_message = models.OneToOneField(
        OutboxMessage, null=True, blank=True, on_delete=models.PROTECT, related_name="delivery"
    )
    provider = models.CharField(max_length=64, blank=True, help_text="Backend that sent it.")
    provider_message_id = models.CharField(max_length=128, blank=True)
    reason = models.CharField(
        max_length=64, blank=True, help_text="Why it failed: a short code, e.g. invalid_number."
    )
    reason_detail = models.TextField(blank=True)
    is_test = models.BooleanField(default=False)
    is_resend = models.BooleanField(default=False)
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resent_by_label = models.CharField(max_length=200, blank=True)
    resent_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resent_by_client = models.ForeignKey(
        ApiClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "delivered", "failed"]),
                name="delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(channel__in=["email", "sms", "whatsapp"]), name="delivery_channel_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(delivered_at__isnull=False),
                name="delivery_delivered_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="failed") | (Q(failed_at__isnull=False) & ~Q(reason="")),
                name="delivery_failed_has_reason",
            ),
            models.CheckConstraint(
                condition=Q(is_resend=False, previous__isnull=True)
                | Q(is_resend=True, previous__isnull=False),
                name="delivery_resend_names_previous",
            ),
            models.UniqueConstraint(
                fields=["order"], condition=Q(is_resend=False), name="delivery_first_per_order"
            ),
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["pending", "processing"]),
                name="delivery_one_open_per_order",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="delivery_provider_message_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "status", "-id"], name="delivery_prog_status_idx"),
            models.Index(fields=["campaign", "status"], name="delivery_campaign_status_idx"),
            models.Index(fields=["order", "-id"], name="delivery_order_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.channel}, {self.status})"


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success"
        TRANSIENT = "transient"
        PERMANENT = "permanent"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_set")
    attempted_at = models.DateTimeField()
    channel = models.CharField(max_length=16, choices=Channel.choices)
    destination = models.CharField(max_length=254, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["success", "transient", "permanent"]),
                name="delivery_attempt_outcome_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.pk} of delivery {self.delivery_id} ({self.outcome})"
