"""Orders: one reward going to one member, from request to fulfilment or cancellation.

Rules that hold for one row are CHECK constraints here; every write goes through
`orders.services`. Uploads, deliveries and payouts are built by later issues."""

from django.db import models
from django.db.models import Q

from campaigns.models import MONEY, Campaign, Voucher
from plum.models import Member, Programme, currency_validator
from plum.statemachine import Transitions
from wallets.models import LedgerTransaction

# pending -> completed (fulfilled) or cancelled (cancelled, or rejected by an approver);
# completed -> cancelled while the voucher is unredeemed (the voucher is cancelled with it).
ORDER_TRANSITIONS = Transitions(
    "order",
    {
        "pending": ["completed", "cancelled"],
        "completed": ["cancelled"],
        "cancelled": [],
    },
)


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class ApprovalState(models.TextChoices):
        NOT_REQUIRED = "not_required", "Not required"
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    class Source(models.TextChoices):
        API = "api", "API issuance"
        EVENT = "event", "Event rule"
        UPLOAD = "upload", "Bulk upload"
        STOREFRONT = "storefront", "Storefront redemption"
        ADMIN = "admin", "Admin"

    class DeliveryStatus(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        DELIVERED = "delivered"
        FAILED = "failed"

    booking_id = models.CharField(
        max_length=16, editable=False, help_text="Shown to members and agents: PLM-XXXX-XXXX."
    )
    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="orders")
    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="orders")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="orders")
    value = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, validators=[currency_validator])
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    approval_state = models.CharField(
        max_length=16, choices=ApprovalState.choices, default=ApprovalState.NOT_REQUIRED
    )
    # A foreign key, not one-to-one: a voucher recovered to the campaign's pool (unused) is
    # issued again, to a later order. The latest order naming a voucher is the one holding it.
    voucher = models.ForeignKey(
        Voucher, null=True, blank=True, on_delete=models.PROTECT, related_name="orders"
    )
    delivery_status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    is_test = models.BooleanField(default=False)
    # A storefront redemption: the points the member paid and the burn that took them. Cancelling
    # the order reverses that burn (orders.services.order_cancel).
    points = models.PositiveBigIntegerField(null=True, blank=True)
    points_transaction = models.ForeignKey(
        LedgerTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reference = models.CharField(
        max_length=120, blank=True, help_text="The caller's own id for this order."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["booking_id"], name="order_booking_id_unique"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "completed", "cancelled"]),
                name="order_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(approval_state__in=["not_required", "pending", "approved", "rejected"]),
                name="order_approval_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(source__in=["api", "event", "upload", "storefront", "admin"]),
                name="order_source_valid",
            ),
            models.CheckConstraint(
                condition=Q(delivery_status__in=["pending", "processing", "delivered", "failed"]),
                name="order_delivery_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status="completed")
                | Q(voucher__isnull=False, completed_at__isnull=False),
                name="order_completed_has_voucher",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(cancelled_at__isnull=False),
                name="order_cancelled_has_time",
            ),
            models.CheckConstraint(condition=Q(value__gt=0), name="order_value_positive"),
            models.CheckConstraint(
                condition=Q(points__isnull=True) | Q(points__gt=0), name="order_points_positive"
            ),
            models.CheckConstraint(
                condition=Q(points_transaction__isnull=True) | Q(points__isnull=False),
                name="order_points_transaction_has_points",
            ),
        ]
        indexes = [
            # The API's and the admin's lists: a programme's orders, newest first, by status.
            models.Index(fields=["programme", "status", "-id"], name="order_programme_status_idx"),
            models.Index(fields=["campaign", "status"], name="order_campaign_status_idx"),
            models.Index(fields=["member", "-id"], name="order_member_idx"),
            models.Index(fields=["programme", "created_at"], name="order_programme_created_idx"),
            models.Index(
                fields=["programme", "id"],
                condition=Q(status="pending", approval_state="pending"),
                name="order_approval_queue_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.booking_id
