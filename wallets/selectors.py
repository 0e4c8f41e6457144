"""Wallet reads, and the ledger's self-check."""

from dataclasses import dataclass

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, Window
from django.db.models.functions import Coalesce, Lag

from plum.models import AuditEvent, Member
from plum.services.audit import MEMBER_OBJECT_TYPE
from wallets.models import Account, LedgerTransaction, Posting


def member_audit_log(*, member: Member, actions: list[str] | None = None) -> QuerySet:
    """Every audited action taken against the member, newest first: detail changes, wallet
    credits and debits (`points.*`), orders, vouchers issued to it, and anything else whose
    object is the member or belongs to it, with actor and time. One indexed query: events
    naming the member (AuditEvent.member_id, audit_member_idx) or whose object is the member
    (audit_object_idx, which also finds events written before member_id existed). The caller
    has already decided that the member is in scope. Optionally narrowed to some actions."""
    events = AuditEvent.objects.filter(
        Q(member_id=member.pk) | Q(object_type=MEMBER_OBJECT_TYPE, object_id=str(member.pk))
    )
    if actions:
        events = events.filter(action__in=actions)
    return events.order_by("-id")


def wallet_get(*, member: Member) -> Account | None:
    """The member's wallet, or None before its first posting."""
    return Account.objects.filter(member=member).first()


def wallet_posting_list(*, wallet: Account | None) -> QuerySet:
    """A wallet's postings with their transactions, for ledger pages (newest first by id)."""
    if wallet is None:
        return Posting.objects.none()
    return Posting.objects.filter(account=wallet).select_related("transaction")


@dataclass(frozen=True)
class LedgerProblem:
    kind: str  # "account", "transaction" or "posting"
    object_id: int
    message: str


def ledger_problems(*, limit: int = 100) -> list[LedgerProblem]:
    """Accounts whose balance is not the sum of their postings, then transactions that do not
    sum to zero or have fewer than two postings, then postings whose `balance_after` is not
    the previous posting's (on the same account, by id) plus their amount; up to `limit` of
    each, in id order. With the first check, the chain proves that every posting's balance
    after is the running sum of its account. Three queries however large the ledger."""
    posted = (
        Posting.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total")
    )
    accounts = (
        Account.objects.annotate(posted=Coalesce(Subquery(posted), Value(0)))
        .exclude(balance=F("posted"))
        .order_by("id")
        .values_list("id", "kind", "balance", "posted")[:limit]
    )
    problems = [
        LedgerProblem(
            "account",
            account_id,
            f"account {account_id} ({kind}) has balance {balance} but its postings sum to {total}",
        )
        for account_id, kind, balance, total in accounts
    ]
    transactions = (
        LedgerTransaction.objects.order_by()
        .annotate(total=Coalesce(Sum("postings__amount"), Value(0)), legs=Count("postings"))
        .filter(~Q(total=0) | Q(legs__lt=2))
        .order_by("id")
        .values_list("id", "total", "legs")[:limit]
    )
    problems += [
        LedgerProblem(
            "transaction",
            txn_id,
            f"transaction {txn_id} has {legs} posting(s) summing to {total}",
        )
        for txn_id, total, legs in transactions
    ]
    previous = Window(Lag("balance_after"), partition_by=[F("account_id")], order_by=F("id").asc())
    postings = (
        Posting.objects.annotate(expected=Coalesce(previous, Value(0)) + F("amount"))
        .filter(~Q(balance_after=F("expected")))
        .order_by("id")
        .values_list("id", "account_id", "balance_after", "expected")[:limit]
    )
    problems += [
        LedgerProblem(
            "posting",
            posting_id,
            f"posting {posting_id} on account {account_id} says balance after {balance_after} "
            f"but the account's postings up to it sum to {expected}",
        )
        for posting_id, account_id, balance_after, expected in postings
    ]
    return problems
