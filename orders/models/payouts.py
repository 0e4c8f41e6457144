"""Merchant payouts: what Plum owes each merchant for the rewards it sold, one statement per
(programme, merchant, currency, period).

A payout is written once, by `orders.services.payouts_close`, and then never changes except for
its status (closed -> approved -> paid) and who moved it there. Its lines (one per sold order,
one per cancellation of an order already paid out) are append-only. On Postgres triggers
(migration `payouts`) refuse any other UPDATE, any DELETE and TRUNCATE, and any line added to a
payout that is no longer a draft; the service checks the same before it writes."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from campaigns.models import MONEY, Merchant
from orders.models.order import Order
from plum.models import Programme, currency_validator
from plum.statemachine import Transitions

# draft exists only inside the closing transaction (lines are added, then totals and status are
# written in one UPDATE); a committed payout is closed, approved or paid.
PAYOUT_TRANSITIONS = Transitions(
    "payout",
    {
        "draft": ["closed"],
        "closed": ["approved"],
        "approved": ["paid"],
        "paid": [],
    },
)


class Payout(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        CLOSED = "closed"
        APPROVED = "approved"
        PAID = "paid"

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="payouts")
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="payouts")
    currency = models.CharField(max_length=3, validators=[currency_validator])
    period_kind = models.CharField(max_length=16, choices=Merchant.PayoutPeriod.choices)
    period_start = models.DateTimeField(help_text="Inclusive, UTC.")
    period_end = models.DateTimeField(help_text="Exclusive, UTC.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # Sums of the lines: sales positive, adjustments negative; net = gross - commission.
    gross = models.DecimalField(**MONEY, default=0)
    commission = models.DecimalField(**MONEY, default=0)
    net = models.DecimalField(**MONEY, default=0)
    order_count = models.PositiveIntegerField(default=0, help_text="Sale lines.")
    adjustment_count = models.PositiveIntegerField(default=0, help_text="Cancellation lines.")
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    paid_reference = models.CharField(
        max_length=120, blank=True, help_text="The bank transfer's reference."
    )

    class Meta:
        ordering = ["-period_start", "merchant__name", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["programme", "merchant", "currency", "period_start", "period_end"],
                name="payout_one_per_merchant_period",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "closed", "approved", "paid"]),
                name="payout_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(period_kind__in=["weekly", "monthly"]), name="payout_period_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(period_end__gt=F("period_start")), name="payout_period_positive"
            ),
            models.CheckConstraint(
                condition=Q(status="draft") | Q(closed_at__isnull=False),
                name="payout_closed_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "paid"]) | Q(approved_at__isnull=False),
                name="payout_approved_has_time",
            ),
            models.CheckConstraint(
                condition=~Q(status="paid") | Q(paid_at__isnull=False),
                name="payout_paid_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "status", "-period_start"], name="payout_list_idx"),
            models.Index(fields=["merchant", "-period_start"], name="payout_merchant_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.merchant} {self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d} "
            f"{self.currency}"
        )


class PayoutLine(models.Model):
    class Kind(models.TextChoices):
        SALE = "sale"
        ADJUSTMENT = "adjustment"

    # No single-column indexes: (payout, kind, id) and the unique (order, kind) lead with them.
    payout = models.ForeignKey(
        Payout, on_delete=models.PROTECT, related_name="lines", db_index=False
    )
    order = models.ForeignKey(
        Order, on_delete=models.PROTECT, related_name="payout_lines", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    occurred_at = models.DateTimeField(help_text="Completed (sale) or cancelled (adjustment).")
    commission_percent = models.DecimalField(max_digits=5, decimal_places=2)
    # Signed: a sale is positive, its adjustment the exact negation of it.
    face_value = models.DecimalField(**MONEY)
    commission = models.DecimalField(**MONEY)
    net = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["payout", "id"]
        constraints = [
            # An order is paid out at most once and taken back at most once, whatever the
            # period, whoever closes it, however many closes run at once.
            models.UniqueConstraint(fields=["order", "kind"], name="payout_line_once_per_order"),
            models.CheckConstraint(
                condition=Q(kind="sale", face_value__gt=0, commission__gte=0)
                | Q(kind="adjustment", face_value__lt=0, commission__lte=0),
                name="payout_line_sign_by_kind",
            ),
            models.CheckConstraint(
                condition=Q(commission_percent__gte=0, commission_percent__lte=100),
                name="payout_line_commission_0_100",
            ),
        ]
        indexes = [models.Index(fields=["payout", "kind", "id"], name="payout_line_payout_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.order_id} {self.face_value}"
