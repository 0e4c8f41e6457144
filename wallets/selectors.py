"""Wallet reads, and the ledger's self-check."""

from dataclasses import dataclass

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from plum.models import Member
from wallets.models import Account, LedgerTransaction, Posting


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
    kind: str  # "account" or "transaction"
    object_id: int
    message: str


def ledger_problems(*, limit: int = 100) -> list[LedgerProblem]:
    """Accounts whose balance is not the sum of their postings, then transactions that do not
    sum to zero or have fewer than two postings; up to `limit` of each, in id order. Two
    aggregate queries however large the ledger."""
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
    return problems
