"""Catalog (merchants, rewards), campaigns and voucher codes.

Counters live on the campaign row, guarded by CHECK constraints so that no code path, not even
raw SQL, can take them past their limits; services move them with conditional UPDATEs."""

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from plum.models import Channel, Member, Programme, country_validator, currency_validator
from plum.statemachine import Transitions

MONEY = {"max_digits": 14, "decimal_places": 2}
# The largest amount a MONEY column holds. A campaign's issued value may not pass it even with no
# budget: the counter UPDATEs treat a NULL budget as this ceiling, so the issue that would
# overflow the column is refused as budget_exhausted instead of failing in the database.
MONEY_MAX = Decimal(10 ** (MONEY["max_digits"] - MONEY["decimal_places"])) - Decimal("0.01")


class Merchant(models.Model):
    """A brand partner whose rewards are sold; completed orders accrue payouts to it."""

    class PayoutPeriod(models.TextChoices):
        WEEKLY = "weekly"
        MONTHLY = "monthly"

    name = models.CharField(max_length=200, unique=True)
    commission_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    payout_period = models.CharField(
        max_length=16, choices=PayoutPeriod.choices, default=PayoutPeriod.MONTHLY
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(commission_percent__gte=0, commission_percent__lte=100),
                name="merchant_commission_0_100",
            )
        ]

    def __str__(self) -> str:
        return self.name


class Reward(models.Model):
    class Kind(models.TextChoices):
        GIFT_CARD = "gift_card", "Gift card"
        EXPERIENCE = "experience", "Experience"
        MERCHANDISE = "merchandise", "Merchandise"
        PREPAID_WALLET = "prepaid_wallet", "Prepaid wallet"
        PROMO_CODE = "promo_code", "Promo code"

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="rewards")
    sku = models.CharField(max_length=64, unique=True, help_text="Stable id for imports.")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    country = models.CharField(max_length=2, validators=[country_validator])
    currency = models.CharField(max_length=3, validators=[currency_validator])
    denominations = models.JSONField(
        default=list, blank=True, help_text='Fixed face values, e.g. ["500.00", "1000.00"].'
    )
    min_value = models.DecimalField(**MONEY, null=True, blank=True)
    max_value = models.DecimalField(**MONEY, null=True, blank=True)
    points_price = models.PositiveIntegerField(
        null=True, blank=True, help_text="Points per unit of currency in the storefront."
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.CheckConstraint(
                # Both bounds or neither: a NULL alone would pass a CHECK.
                condition=Q(min_value__isnull=True, max_value__isnull=True)
                | Q(
                    min_value__isnull=False,
                    max_value__isnull=False,
                    min_value__gt=0,
                    max_value__gte=F("min_value"),
                ),
                name="reward_range_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["country", "kind", "merchant"], name="reward_filter_idx"),
            models.Index(fields=["merchant", "name"], name="reward_merchant_idx"),
            models.Index(fields=["kind", "name"], name="reward_kind_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        if (self.min_value is None) != (self.max_value is None):
            raise ValidationError({"max_value": "Give both bounds of the range, or neither."})
        if self.min_value is not None and not 0 < self.min_value <= self.max_value:
            raise ValidationError({"max_value": "The range must be positive, min <= max."})
        if self.denominations and self.min_value is not None:
            raise ValidationError({"denominations": "Fixed denominations or a range, not both."})

    def accepts_value(self, value: Decimal) -> bool:
        if self.denominations:
            return value in {Decimal(str(d)) for d in self.denominations}
        if self.min_value is not None:
            return self.min_value <= value <= self.max_value
        return value > 0


class CampaignQuerySet(models.QuerySet):
    def issuing(self, now):
        return self.filter(status=Campaign.Status.ACTIVE, starts_at__lte=now).filter(
            Q(ends_at__isnull=True) | Q(ends_at__gt=now)
        )


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        ENDED = "ended"

    class ApprovalMode(models.TextChoices):
        AUTO = "auto"
        MANUAL = "manual"

    class CodeSource(models.TextChoices):
        GENERATED = "generated"
        POOL = "pool"

    TRANSITIONS = Transitions(
        "campaign",
        {
            "draft": ["active", "ended"],
            "active": ["paused", "ended"],
            "paused": ["active", "ended"],
            "ended": [],
        },
    )

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="campaigns")
    value = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0.01"))])
    currency = models.CharField(max_length=3, validators=[currency_validator])
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    max_rewards = models.PositiveIntegerField(null=True, blank=True)
    budget = models.DecimalField(**MONEY, null=True, blank=True)
    per_member_cap = models.PositiveIntegerField(null=True, blank=True)
    approval_mode = models.CharField(
        max_length=16, choices=ApprovalMode.choices, default=ApprovalMode.AUTO
    )
    code_source = models.CharField(
        max_length=16, choices=CodeSource.choices, default=CodeSource.GENERATED
    )
    code_prefix = models.CharField(max_length=12, blank=True)
    code_length = models.PositiveSmallIntegerField(
        default=13,
        validators=[MinValueValidator(8), MaxValueValidator(32)],
        help_text="Random characters, before the check character (13 ≈ 64 bits).",
    )
    expiry_days = models.PositiveIntegerField(null=True, blank=True)
    expiry_date = models.DateTimeField(null=True, blank=True)
    default_channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    in_storefront = models.BooleanField(default=False)
    issued_count = models.PositiveIntegerField(default=0, editable=False)
    issued_value = models.DecimalField(**MONEY, default=Decimal("0"), editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=F("starts_at")),
                name="campaign_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(max_rewards__isnull=True) | Q(issued_count__lte=F("max_rewards")),
                name="campaign_count_within_max",
            ),
            models.CheckConstraint(
                condition=Q(budget__isnull=True) | Q(issued_value__lte=F("budget")),
                name="campaign_value_within_budget",
            ),
            models.CheckConstraint(
                condition=Q(issued_count__gte=0) & Q(issued_value__gte=0),
                name="campaign_counters_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "active", "paused", "ended"]),
                name="campaign_status_valid",
            ),
            models.CheckConstraint(
                condition=~(Q(expiry_days__isnull=False) & Q(expiry_date__isnull=False)),
                name="campaign_one_expiry_rule",
            ),
            # Target of the vouchers' composite foreign key (campaign, programme).
            models.UniqueConstraint(fields=["id", "programme"], name="campaign_id_programme"),
        ]
        indexes = [models.Index(fields=["programme", "status"], name="campaign_programme_idx")]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        errors = {}
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "The end must be after the start."
        if self.expiry_days and self.expiry_date:
            errors["expiry_date"] = "Give expiry in days after issue or a fixed date, not both."
        if self.reward_id and self.currency and self.reward.currency != self.currency:
            errors["currency"] = f"The reward is sold in {self.reward.currency}."
        if self.reward_id and self.value and not self.reward.accepts_value(self.value):
            errors["value"] = "The reward is not sold at this value."
        if errors:
            raise ValidationError(errors)


class CampaignMemberCounter(models.Model):
    """Rewards issued to one member by one campaign: the per-member cap's counter row."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    issued = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "member"], name="campaign_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}/{self.member_id}: {self.issued}"


class VoucherStatus(models.TextChoices):
    AVAILABLE = "available", "Available in pool"
    ACTIVE = "active"
    PARTIALLY_REDEEMED = "partially_redeemed", "Partially redeemed"
    REDEEMED = "redeemed"
    EXPIRED = "expired"
    FLAGGED = "flagged"
    RECOVERED = "recovered"
    CANCELLED = "cancelled"


VOUCHER_TRANSITIONS = Transitions(
    "voucher",
    {
        # issue to a member; withdraw; a pooled code with a fixed expiry date lapses
        "available": ["active", "cancelled", "expired"],
        "active": [
            "partially_redeemed",
            "redeemed",
            "expired",
            "flagged",
            "available",  # recovered back to the pool for redistribution
            "recovered",  # recovered and retired
            "cancelled",
        ],
        "partially_redeemed": ["partially_redeemed", "redeemed", "expired", "flagged"],
        # unflag returns to the state it was flagged from; an unused one may be recovered
        "flagged": ["active", "partially_redeemed", "available", "recovered", "cancelled"],
        # an expiry extension revives; an unused expired voucher may be recovered, or
        # cancelled with its order
        "expired": ["active", "partially_redeemed", "available", "recovered", "cancelled"],
        "recovered": [],
        "redeemed": [],
        "cancelled": [],
    },
)


class Voucher(models.Model):
    # Unique through Meta.constraints: a unique=True CharField would get a second,
    # pattern-ops index on Postgres that nothing here uses and every insert pays for.
    code = models.CharField(max_length=64)
    # The programme is denormalised from the campaign so that scoping needs no join. On
    # Postgres, statement-level triggers (migration 0002) check that (campaign, programme)
    # names an existing campaign of that programme, one join per statement instead of a
    # foreign key's check per row, which bulk code generation would pay a million times.
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        related_name="vouchers",
        db_index=False,
        db_constraint=False,
    )
    programme = models.ForeignKey(
        Programme, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    face_value = models.DecimalField(**MONEY)
    balance = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=20, choices=VoucherStatus.choices, default=VoucherStatus.AVAILABLE
    )
    # What an unflag or an expiry extension returns the voucher to.
    status_before = models.CharField(max_length=20, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    is_test = models.BooleanField(default=False)
    member = models.ForeignKey(
        Member,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="vouchers",
        db_index=False,  # a partial index below: pool codes have no member
    )
    issued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["code"], name="voucher_code_unique"),
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="voucher_balance_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(balance__lte=F("face_value")), name="voucher_balance_within_face"
            ),
            models.CheckConstraint(condition=Q(face_value__gt=0), name="voucher_face_positive"),
            models.CheckConstraint(
                condition=Q(status__in=VoucherStatus.values), name="voucher_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="available") | Q(member__isnull=True),
                name="voucher_pool_unassigned",
            ),
        ]
        indexes = [
            # Lists by campaign and status, and the pool claim (status available, oldest first).
            models.Index(fields=["campaign", "status", "id"], name="voucher_campaign_status_idx"),
            models.Index(fields=["programme", "status"], name="voucher_scope_idx"),
            models.Index(
                fields=["member"], condition=Q(member__isnull=False), name="voucher_member_idx"
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(
                    status__in=["active", "partially_redeemed", "available"],
                    expires_at__isnull=False,
                ),
                name="voucher_lapse_idx",
            ),
        ]

    def __str__(self) -> str:
        return self.masked_code

    @property
    def masked_code(self) -> str:
        return f"…{self.code[-4:]}"


class Redemption(models.Model):
    voucher = models.ForeignKey(Voucher, on_delete=models.PROTECT, related_name="redemptions")
    amount = models.DecimalField(**MONEY)
    reference = models.CharField(max_length=120)
    balance_after = models.DecimalField(**MONEY)
    redeemed_at = models.DateTimeField(auto_now_add=True)
    actor_label = models.CharField(max_length=200)
    redeemed_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    redeemed_by_client = models.ForeignKey(
        "plum.ApiClient", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["voucher", "reference"], name="redemption_ref_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="redemption_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} on {self.voucher_id} ({self.reference})"
