"""Points wallets and the double-entry ledger.

Points move only as balanced transactions: each `LedgerTransaction` has two or more
`Posting`s, on accounts of its programme, whose amounts sum to zero. Postings and transactions
are append-only; a correction is a reversing transaction naming the one it reverses. A
member's balance is kept on its wallet `Account`, changed only in the transaction that writes
the postings, and never below zero (CHECK). On Postgres, triggers (migration 0002) reject
UPDATE, DELETE and TRUNCATE of ledger rows and, at commit, any transaction that does not
balance. `manage.py check_ledger` proves balance == sum(postings) for every account."""

from django.db import models
from django.db.models import F, Q

from plum.models import ActorType, Member, Programme

MAX_POINTS = 10**12  # per transaction: far above any award, far below bigint overflow


class AccountKind(models.TextChoices):
    MEMBER_WALLET = "member_wallet", "Member wallet"
    FUNDING = "funding", "Programme funding"
    REDEMPTION = "redemption", "Redemption"
    EXPIRY = "expiry", "Expiry (breakage)"
    ADJUSTMENTS = "adjustments", "Adjustments"


SYSTEM_ACCOUNT_KINDS = [k for k in AccountKind.values if k != AccountKind.MEMBER_WALLET]


class Account(models.Model):
    """A member's wallet, or one of the programme's counter-accounts. Counter-accounts go
    negative by design (funding is minus everything ever issued); only wallets have a floor."""

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    member = models.ForeignKey(
        Member, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    balance = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["programme_id", "kind", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=AccountKind.values), name="account_kind_valid"
            ),
            models.CheckConstraint(
                condition=(Q(kind=AccountKind.MEMBER_WALLET) & Q(member__isnull=False))
                | (~Q(kind=AccountKind.MEMBER_WALLET) & Q(member__isnull=True)),
                name="account_wallet_has_member",
            ),
            models.CheckConstraint(
                condition=~Q(kind=AccountKind.MEMBER_WALLET) | Q(balance__gte=0),
                name="account_wallet_non_negative",
            ),
            # A member belongs to one programme, so one wallet per member is one per programme.
            models.UniqueConstraint(
                fields=["member"], condition=Q(member__isnull=False), name="account_wallet_unique"
            ),
            models.UniqueConstraint(
                fields=["programme", "kind"],
                condition=~Q(kind=AccountKind.MEMBER_WALLET),
                name="account_system_unique",
            ),
        ]

    def __str__(self) -> str:
        if self.member_id:
            return f"wallet of member {self.member_id}"
        return f"{self.kind} of programme {self.programme_id}"


class TransactionKind(models.TextChoices):
    EARN = "earn"
    BURN = "burn"
    REVERSAL = "reversal"
    EXPIRY = "expiry"
    ADJUSTMENT = "adjustment"


class Reason(models.TextChoices):
    MILESTONE_AWARD = "milestone_award", "Milestone award"
    PROGRAMME_RULE = "programme_rule", "Programme rule"
    MANUAL_ADJUSTMENT = "manual_adjustment", "Manual adjustment"
    REDEMPTION = "redemption", "Redemption"
    ORDER_CANCELLED = "order_cancelled", "Order cancelled"
    CORRECTION = "correction", "Correction"
    POINTS_EXPIRY = "points_expiry", "Points expiry"


class LedgerTransaction(models.Model):
    """Append-only. The actor is kept as plain columns, like the audit log's: a foreign key
    with SET_NULL would have to UPDATE a row that may never change."""

    programme = models.ForeignKey(Programme, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=TransactionKind.choices)
    reason = models.CharField(max_length=32, choices=Reason.choices)
    reference = models.CharField(max_length=120, blank=True)
    note = models.TextField(blank=True)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_label = models.CharField(max_length=200)
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    actor_client_id = models.BigIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=255)
    # One-to-one: a transaction is reversed at most once.
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["programme", "idempotency_key"], name="ledger_txn_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=TransactionKind.values), name="ledger_txn_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(reason__in=Reason.values), name="ledger_txn_reason_valid"
            ),
            models.CheckConstraint(
                condition=(Q(kind=TransactionKind.REVERSAL) & Q(reverses__isnull=False))
                | (~Q(kind=TransactionKind.REVERSAL) & Q(reverses__isnull=True)),
                name="ledger_txn_reversal_names_original",
            ),
            models.CheckConstraint(
                condition=~Q(reverses=F("pk")), name="ledger_txn_not_self_reversing"
            ),
            models.CheckConstraint(condition=~Q(idempotency_key=""), name="ledger_txn_key_set"),
            models.CheckConstraint(
                condition=~Q(kind=TransactionKind.ADJUSTMENT) | ~Q(note=""),
                name="ledger_txn_adjustment_has_note",
            ),
        ]
        indexes = [
            models.Index(fields=["programme", "-created_at"], name="ledger_txn_programme_idx"),
            models.Index(fields=["programme", "reference"], name="ledger_txn_reference_idx"),
            # The wallet report filtered by kind over a date range (burns of a week, say):
            # without it, every transaction of the range is read to keep a few.
            models.Index(fields=["programme", "kind", "-created_at"], name="ledger_txn_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} ({self.reason})"


class Posting(models.Model):
    """One leg of a transaction: `amount` points onto `account` (negative: off it), and the
    account's balance right after it."""

    transaction = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, related_name="postings"
    )
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="postings", db_index=False
    )
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="posting_amount_non_zero"),
        ]
        indexes = [
            # A wallet's ledger, newest first, paged by id (cursor pagination).
            models.Index(fields=["account", "-id"], name="posting_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} on account {self.account_id} (txn {self.transaction_id})"


class PointsPolicy(models.Model):
    """A programme's points rules. With `expiry_months` set, points expire that many months
    after they were earned, oldest first; without, they never expire."""

    programme = models.OneToOneField(Programme, on_delete=models.PROTECT, related_name="+")
    expiry_months = models.PositiveSmallIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "points policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(expiry_months__isnull=True)
                | Q(expiry_months__gte=1, expiry_months__lte=120),
                name="points_policy_expiry_1_120",
            ),
        ]

    def __str__(self) -> str:
        return f"points policy of programme {self.programme_id}"
