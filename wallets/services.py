"""Earn, burn, adjust, reverse and expire points: every movement is one balanced ledger
transaction.

Invariants (see wallets.models):
- every transaction has two or more postings summing to zero (Postgres re-checks at commit);
- for every account, balance == sum of its postings: balances move only in `_post`, in the
  database transaction that writes the postings;
- a wallet never goes below zero: a debit is one conditional UPDATE
  (`balance = balance - n WHERE balance >= n`) whose row count decides, backed by a CHECK;
- one idempotency key per programme is one transaction: a replay returns the first, and
  concurrent duplicates are decided by the unique constraint;
- a transaction is reversed at most once (a unique foreign key).

Lock order: a transaction updates its accounts in ascending primary key, so two postings that
share accounts (every earn of a programme touches its funding account) queue instead of
deadlocking. The services open their own database transaction, or a savepoint when a caller
(an order) already has one, so a burn commits or rolls back with the order that caused it; a
refused posting rolls back the accounts it would have created too. Expiry locks the wallet row
(FOR NO KEY UPDATE) before it reads the postings, then posts as above; an order that burns
points should lock its own rows before calling in, never after."""

import calendar
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from plum.actors import SYSTEM, Actor, actor_fields
from plum.errors import InvalidInputError
from plum.models import Member, Programme
from plum.services.audit import audit_log
from wallets.errors import (
    InsufficientPointsError,
    LedgerKeyReusedError,
    TransactionAlreadyReversedError,
    TransactionNotReversibleError,
)
from wallets.models import (
    MAX_POINTS,
    Account,
    AccountKind,
    LedgerTransaction,
    PointsPolicy,
    Posting,
    Reason,
    TransactionKind,
)

MAX_REFERENCE = 120
MAX_KEY = 255


@dataclass(frozen=True)
class Leg:
    account: Account
    amount: int


# --- accounts --------------------------------------------------------------------------------


def _account_get_or_create(*, lookup: dict, actor: Actor, action: str) -> Account:
    """The account matching `lookup`, created if missing. Two concurrent creators cannot both
    insert: a unique constraint decides, and the loser reads the winner's row."""
    account = Account.objects.filter(**lookup).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            account = Account.objects.create(**lookup)
            audit_log(
                actor=actor,
                action=action,
                obj=account,
                changes={"kind": [None, account.kind], "member": [None, account.member_id]},
            )
            return account
    except IntegrityError:
        return Account.objects.get(**lookup)


def wallet_get_or_create(*, member: Member, actor: Actor) -> Account:
    """The member's wallet in its programme (one per member)."""
    return _account_get_or_create(
        lookup={
            "programme_id": member.programme_id,
            "kind": AccountKind.MEMBER_WALLET,
            "member": member,
        },
        actor=actor,
        action="wallet.create",
    )


def system_account_get_or_create(*, programme_id: int, kind: str, actor: Actor) -> Account:
    """One of the programme's counter-accounts (funding, redemption, expiry, adjustments)."""
    if kind == AccountKind.MEMBER_WALLET or kind not in AccountKind.values:
        raise ValueError(f"Not a system account kind: {kind!r}")
    return _account_get_or_create(
        lookup={"programme_id": programme_id, "kind": kind, "member": None},
        actor=actor,
        action="ledger_account.create",
    )


# --- validation ------------------------------------------------------------------------------


def _check_points(points, *, field: str = "points", allow_negative: bool = False) -> int:
    if isinstance(points, bool) or not isinstance(points, int):
        raise InvalidInputError(fields={field: ["Points are a whole number."]})
    size = abs(points) if allow_negative else points
    if not 1 <= size <= MAX_POINTS:
        wanted = "non-zero" if allow_negative else "positive"
        raise InvalidInputError(
            fields={field: [f"Points must be {wanted} and at most {MAX_POINTS} in size."]}
        )
    return points


def _check_text(*, reference: str, idempotency_key: str, reason: str) -> None:
    fields = {}
    if len(reference) > MAX_REFERENCE:
        fields["reference"] = [f"At most {MAX_REFERENCE} characters."]
    if not 1 <= len(idempotency_key) <= MAX_KEY:
        fields["idempotency_key"] = [f"Give a key of 1 to {MAX_KEY} characters."]
    if reason not in Reason.values:
        fields["reason"] = [f"One of: {', '.join(Reason.values)}."]
    if fields:
        raise InvalidInputError(fields=fields)


# --- posting ---------------------------------------------------------------------------------


def _fingerprint(kind: str, legs) -> tuple:
    return (kind, tuple(sorted((leg[0], leg[1]) for leg in legs)))


def _replay(existing: LedgerTransaction, kind: str, legs: list[Leg]) -> LedgerTransaction:
    stored = existing.postings.values_list("account_id", "amount")
    wanted = [(leg.account.pk, leg.amount) for leg in legs]
    if _fingerprint(existing.kind, stored) != _fingerprint(kind, wanted):
        raise LedgerKeyReusedError()
    return existing


def _move(leg: Leg) -> int:
    """Apply one leg to its account's balance; return the balance after it, from the same
    statement (UPDATE ... RETURNING). A wallet is debited only by a conditional UPDATE: no row
    back means not enough points. The UPDATE holds the row lock until commit, so the returned
    balance is the one this posting produced, and postings of an account are written in the
    order of their balances (what check_ledger's balance_after chain relies on)."""
    table = connection.ops.quote_name(Account._meta.db_table)
    sql = f"UPDATE {table} SET balance = balance + %s WHERE id = %s"  # noqa: S608 - no input
    params = [leg.amount, leg.account.pk]
    if leg.account.kind == AccountKind.MEMBER_WALLET and leg.amount < 0:
        sql += " AND balance >= %s"
        params.append(-leg.amount)
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING balance", params)
        row = cursor.fetchone()
    if row is None:
        balance = Account.objects.values_list("balance", flat=True).get(pk=leg.account.pk)
        raise InsufficientPointsError(balance=balance)
    return row[0]


def _post(
    *,
    programme_id: int,
    kind: str,
    reason: str,
    reference: str,
    idempotency_key: str,
    actor: Actor,
    legs: list[Leg],
    note: str = "",
    reverses: LedgerTransaction | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Write one transaction, its postings and the balances they change, all or nothing.
    Returns (transaction, created); created is False for a replay of the idempotency key."""
    if len(legs) < 2 or sum(leg.amount for leg in legs) != 0 or any(not leg.amount for leg in legs):
        raise ValueError("A ledger transaction needs two or more non-zero legs summing to zero")
    if any(leg.account.programme_id != programme_id for leg in legs):
        raise ValueError("Every leg must be on an account of the transaction's programme")
    _check_text(reference=reference, idempotency_key=idempotency_key, reason=reason)
    existing = LedgerTransaction.objects.filter(
        programme_id=programme_id, idempotency_key=idempotency_key
    ).first()
    if existing is not None:
        return _replay(existing, kind, legs), False
    try:
        with transaction.atomic():
            # The row first: a concurrent duplicate waits here on the unique key, and fails
            # before it has moved any balance.
            txn = LedgerTransaction.objects.create(
                programme_id=programme_id,
                kind=kind,
                reason=reason,
                reference=reference,
                note=note,
                idempotency_key=idempotency_key,
                reverses=reverses,
                **actor_fields(actor),
            )
            postings = []
            for leg in sorted(legs, key=lambda leg: leg.account.pk):
                balance_after = _move(leg)
                postings.append(
                    Posting(
                        transaction=txn,
                        account=leg.account,
                        amount=leg.amount,
                        balance_after=balance_after,
                    )
                )
            Posting.objects.bulk_create(postings)
            for posting in postings:
                if posting.account.kind == AccountKind.MEMBER_WALLET:
                    _audit_wallet_leg(txn, posting, actor)
    except IntegrityError:
        existing = LedgerTransaction.objects.filter(
            programme_id=programme_id, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            return _replay(existing, kind, legs), False
        if reverses is not None and LedgerTransaction.objects.filter(reverses=reverses).exists():
            raise TransactionAlreadyReversedError() from None
        raise
    return txn, True


def _audit_wallet_leg(txn: LedgerTransaction, posting: Posting, actor: Actor) -> None:
    _audit_leg(txn, posting, posting.account.member_id, actor)


def _audit_leg(txn: LedgerTransaction, posting: Posting, member_id: int, actor: Actor) -> None:
    """Audited against the member, so that the member's audit log lists every credit and
    debit with the transaction that made it."""
    audit_log(
        actor=actor,
        action=f"points.{txn.kind}",
        object_type="plum.member",
        object_id=member_id,
        programme_id=txn.programme_id,
        changes={
            "balance": [posting.balance_after - posting.amount, posting.balance_after],
            "points": [None, posting.amount],
            "transaction": [None, txn.pk],
            "reason": [None, txn.reason],
            "reference": [None, txn.reference],
            **({"reverses": [None, txn.reverses_id]} if txn.reverses_id else {}),
            **({"note": [None, txn.note]} if txn.note else {}),
        },
    )


# --- earn, burn, adjust, reverse -------------------------------------------------------------


def points_earn(
    *,
    member: Member,
    points: int,
    reason: str = Reason.MILESTONE_AWARD,
    reference: str = "",
    idempotency_key: str,
    actor: Actor,
    note: str = "",
) -> tuple[LedgerTransaction, bool]:
    """Credit `points` to the member's wallet from the programme's funding account."""
    points = _check_points(points)
    with transaction.atomic():
        wallet = wallet_get_or_create(member=member, actor=actor)
        funding = system_account_get_or_create(
            programme_id=member.programme_id, kind=AccountKind.FUNDING, actor=actor
        )
        return _post(
            programme_id=member.programme_id,
            kind=TransactionKind.EARN,
            reason=reason,
            reference=reference,
            note=note,
            idempotency_key=idempotency_key,
            actor=actor,
            legs=[Leg(funding, -points), Leg(wallet, points)],
        )


def points_earn_many(
    *,
    programme: Programme,
    awards: list[tuple[Member, int]],
    reason: str = Reason.MILESTONE_AWARD,
    reference: str = "",
    idempotency_key: str,
    actor: Actor,
    note: str = "",
) -> tuple[LedgerTransaction, bool]:
    """Credit many members at once (a batch of milestone awards): one balanced transaction
    with one posting per member and one funding posting, written set-based: wallets created
    with one INSERT, locked in primary-key order with one SELECT ... FOR NO KEY UPDATE (the
    lock order every posting follows), balances moved with one UPDATE ... FROM (VALUES)
    RETURNING, postings inserted with one INSERT. Each member's credit is audited against the
    member. A replay of the key returns the first transaction; the same key with other awards
    raises LedgerKeyReusedError. A member of another programme, or named twice, is refused."""
    if not awards:
        raise InvalidInputError(fields={"awards": ["Give at least one award."]})
    fields: dict[str, list[str]] = {}
    seen: set[int] = set()
    for member, points in awards:
        _check_points(points)
        if member.programme_id != programme.pk:
            fields.setdefault("awards", []).append(f"Member {member.pk} is not in {programme}.")
        if member.pk in seen:
            fields.setdefault("awards", []).append(f"Member {member.pk} is named twice.")
        seen.add(member.pk)
    if fields:
        raise InvalidInputError(fields=fields)
    if sum(points for _, points in awards) > MAX_POINTS:
        raise InvalidInputError(fields={"awards": [f"At most {MAX_POINTS} points in one batch."]})
    _check_text(reference=reference, idempotency_key=idempotency_key, reason=reason)
    existing = LedgerTransaction.objects.filter(
        programme_id=programme.pk, idempotency_key=idempotency_key
    ).first()
    if existing is None:
        try:
            return _earn_many(
                programme=programme,
                awards=awards,
                reason=reason,
                reference=reference,
                idempotency_key=idempotency_key,
                actor=actor,
                note=note,
            )
        except IntegrityError:
            existing = LedgerTransaction.objects.filter(
                programme_id=programme.pk, idempotency_key=idempotency_key
            ).first()
            if existing is None:
                raise
    stored = existing.postings.filter(account__kind=AccountKind.MEMBER_WALLET).values_list(
        "account__member_id", "amount"
    )
    wanted = [(member.pk, points) for member, points in awards]
    if _fingerprint(existing.kind, stored) != _fingerprint(TransactionKind.EARN, wanted):
        raise LedgerKeyReusedError()
    return existing, False


def _earn_many(*, programme, awards, reason, reference, idempotency_key, actor, note):
    points_by_member = {member.pk: points for member, points in awards}
    total = sum(points_by_member.values())
    with transaction.atomic():
        funding = system_account_get_or_create(
            programme_id=programme.pk, kind=AccountKind.FUNDING, actor=actor
        )
        known = set(
            Account.objects.filter(member_id__in=points_by_member).values_list(
                "member_id", flat=True
            )
        )
        # In member order: two batches creating the same wallets insert them in one order,
        # so neither waits on a row the other inserted after waiting on it.
        new = [
            Account(programme_id=programme.pk, kind=AccountKind.MEMBER_WALLET, member_id=pk)
            for pk in sorted(points_by_member)
            if pk not in known
        ]
        Account.objects.bulk_create(new, ignore_conflicts=True)
        # The transaction row first, as in _post: a concurrent duplicate waits on its key.
        txn = LedgerTransaction.objects.create(
            programme_id=programme.pk,
            kind=TransactionKind.EARN,
            reason=reason,
            reference=reference,
            note=note,
            idempotency_key=idempotency_key,
            **actor_fields(actor),
        )
        wallets = dict(
            Account.objects.filter(member_id__in=points_by_member).values_list("member_id", "pk")
        )
        amounts = {wallets[member_pk]: points for member_pk, points in points_by_member.items()}
        amounts[funding.pk] = -total
        table = connection.ops.quote_name(Account._meta.db_table)
        ids = sorted(amounts)
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute(
                    f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",  # noqa: S608
                    [ids],
                )
            values = ", ".join(["(%s, %s)"] * len(ids))
            cursor.execute(
                f"UPDATE {table} SET balance = balance + moves.amount "  # noqa: S608
                f"FROM (SELECT column1 AS wallet_id, column2 AS amount FROM (VALUES {values}) "
                f"AS v) AS moves WHERE {table}.id = moves.wallet_id RETURNING id, balance",
                [value for pk in ids for value in (pk, amounts[pk])],
            )
            balances = dict(cursor.fetchall())
        postings = [
            Posting(transaction=txn, account_id=pk, amount=amounts[pk], balance_after=balances[pk])
            for pk in ids
        ]
        Posting.objects.bulk_create(postings)
        member_by_wallet = {wallet: member_pk for member_pk, wallet in wallets.items()}
        for posting in postings:
            if posting.account_id in member_by_wallet:
                _audit_leg(txn, posting, member_by_wallet[posting.account_id], actor)
    return txn, True


def points_burn(
    *,
    member: Member,
    points: int,
    reason: str = Reason.REDEMPTION,
    reference: str = "",
    idempotency_key: str,
    actor: Actor,
) -> tuple[LedgerTransaction, bool]:
    """Debit `points` from the member's wallet to the programme's redemption account, or raise
    InsufficientPointsError (with the current balance) and change nothing."""
    points = _check_points(points)
    wallet = Account.objects.filter(member=member).first()
    if wallet is None:
        existing = LedgerTransaction.objects.filter(
            programme_id=member.programme_id, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            raise LedgerKeyReusedError()  # a burn is never the first posting of a wallet
        raise InsufficientPointsError(balance=0)
    with transaction.atomic():
        redemption = system_account_get_or_create(
            programme_id=member.programme_id, kind=AccountKind.REDEMPTION, actor=actor
        )
        return _post(
            programme_id=member.programme_id,
            kind=TransactionKind.BURN,
            reason=reason,
            reference=reference,
            idempotency_key=idempotency_key,
            actor=actor,
            legs=[Leg(wallet, -points), Leg(redemption, points)],
        )


def points_adjust(
    *,
    member: Member,
    points: int,
    note: str,
    reference: str = "",
    idempotency_key: str,
    actor: Actor,
) -> tuple[LedgerTransaction, bool]:
    """A manual correction, positive or negative, against the adjustments account. The note
    says why and is mandatory; a negative adjustment cannot take the wallet below zero."""
    points = _check_points(points, allow_negative=True)
    if not note or not note.strip():
        raise InvalidInputError(fields={"note": ["Say why the points are adjusted."]})
    with transaction.atomic():
        wallet = wallet_get_or_create(member=member, actor=actor)
        adjustments = system_account_get_or_create(
            programme_id=member.programme_id, kind=AccountKind.ADJUSTMENTS, actor=actor
        )
        return _post(
            programme_id=member.programme_id,
            kind=TransactionKind.ADJUSTMENT,
            reason=Reason.MANUAL_ADJUSTMENT,
            reference=reference,
            note=note.strip(),
            idempotency_key=idempotency_key,
            actor=actor,
            legs=[Leg(adjustments, -points), Leg(wallet, points)],
        )


def transaction_reverse(
    *,
    transaction: LedgerTransaction,
    actor: Actor,
    reason: str = Reason.CORRECTION,
    note: str = "",
    idempotency_key: str | None = None,
) -> tuple[LedgerTransaction, bool]:
    """Post the mirror image of `transaction`, naming it. Once only: reversing again with the
    same key returns the reversal; with another key raises TransactionAlreadyReversedError.
    Reversing an earn whose points were spent raises InsufficientPointsError."""
    original = transaction
    if original.kind == TransactionKind.REVERSAL:
        raise TransactionNotReversibleError()
    key = idempotency_key or f"reversal-of:{original.pk}"
    existing = LedgerTransaction.objects.filter(reverses=original).first()
    if existing is not None and existing.idempotency_key != key:
        raise TransactionAlreadyReversedError(reversal=existing.pk)
    legs = [
        Leg(posting.account, -posting.amount)
        for posting in original.postings.select_related("account")
    ]
    return _post(
        programme_id=original.programme_id,
        kind=TransactionKind.REVERSAL,
        reason=reason,
        reference=original.reference,
        note=note,
        idempotency_key=key,
        actor=actor,
        legs=legs,
        reverses=original,
    )


# --- expiry ----------------------------------------------------------------------------------


def points_policy_set(
    *, programme: Programme, expiry_months: int | None, actor: Actor
) -> PointsPolicy:
    """Set how many months after earning points expire (None: never)."""
    if expiry_months is not None and (
        isinstance(expiry_months, bool)
        or not isinstance(expiry_months, int)
        or not 1 <= expiry_months <= 120
    ):
        raise InvalidInputError(fields={"expiry_months": ["A whole number of months, 1 to 120."]})
    with transaction.atomic():
        policy, _ = PointsPolicy.objects.select_for_update().get_or_create(programme=programme)
        before = policy.expiry_months
        if before != expiry_months:
            policy.expiry_months = expiry_months
            policy.save(update_fields=["expiry_months", "updated_at"])
            audit_log(
                actor=actor,
                action="points_policy.update",
                obj=policy,
                programme_id=programme.pk,
                changes={"expiry_months": [before, expiry_months]},
            )
    return policy


def _months_before(moment: datetime, months: int) -> datetime:
    month_index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(month_index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _expiring(wallet: Account, cutoff: datetime) -> int:
    """Points of `wallet` earned at or before `cutoff` and not yet spent, first-in-first-out:
    every debit (burn, expiry, negative adjustment) consumes the oldest points first, so what
    remains of the old credits is their sum less all debits. A transaction that was reversed,
    and its reversal, cancel out and are left out of both sides."""
    credits_before = debits = 0
    rows = Posting.objects.filter(account=wallet).values_list(
        "amount", "transaction__created_at", "transaction__kind", "transaction__reversed_by"
    )
    for amount, created_at, kind, reversed_by in rows:
        if kind == TransactionKind.REVERSAL or reversed_by is not None:
            continue
        if amount < 0:
            debits -= amount
        elif created_at <= cutoff:
            credits_before += amount
    return max(0, credits_before - debits)


def points_expire(
    *, wallet: Account, months: int, as_of: datetime, actor: Actor = SYSTEM
) -> LedgerTransaction | None:
    """Expire the wallet's points earned more than `months` before `as_of`, to the
    programme's expiry account; None when nothing is due. Idempotent per day: one expiry
    transaction per wallet and day (its key), and a later run finds the expired points already
    debited. The wallet row is
    locked while the amount is computed, so a concurrent burn cannot consume points that are
    being expired."""
    key = f"expiry:{wallet.pk}:{as_of.date().isoformat()}"
    with transaction.atomic():
        wallet = Account.objects.select_for_update(of=("self",), no_key=True).get(pk=wallet.pk)
        if LedgerTransaction.objects.filter(
            programme_id=wallet.programme_id, idempotency_key=key
        ).exists():
            return None  # this day's run is done; points that fell due since wait for tomorrow
        points = _expiring(wallet, _months_before(as_of, months))
        if not points:
            return None
        expiry = system_account_get_or_create(
            programme_id=wallet.programme_id, kind=AccountKind.EXPIRY, actor=actor
        )
        txn, _ = _post(
            programme_id=wallet.programme_id,
            kind=TransactionKind.EXPIRY,
            reason=Reason.POINTS_EXPIRY,
            reference=f"expiry {as_of.date().isoformat()}",
            idempotency_key=key,
            actor=actor,
            legs=[Leg(wallet, -points), Leg(expiry, points)],
        )
        return txn


def points_expire_due(*, as_of: datetime | None = None, actor: Actor = SYSTEM) -> int:
    """Expire what is due in every programme with an expiry policy (the beat task); returns
    the number of expiry transactions posted. Each wallet commits on its own."""
    as_of = as_of or timezone.now()
    posted = 0
    policies = PointsPolicy.objects.filter(expiry_months__isnull=False).order_by("programme_id")
    for policy in policies:
        wallets = Account.objects.filter(
            programme_id=policy.programme_id, kind=AccountKind.MEMBER_WALLET, balance__gt=0
        ).order_by("pk")
        for wallet in list(wallets):
            if points_expire(wallet=wallet, months=policy.expiry_months, as_of=as_of, actor=actor):
                posted += 1
    return posted
