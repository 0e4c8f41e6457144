"""Merchant payouts: close a period, approve, mark paid.

What a payout says (docs/payouts.md):
- a *sale* line for every live order (not is_test) whose reward's merchant is paid on this
  period kind, completed before the period's end, not cancelled before that end, and not yet on
  any payout. Orders completed earlier that no close has taken yet (a transaction that committed
  after its period was closed, a period no close ran for) are taken by the next close, so every
  order is paid out, once;
- an *adjustment* line, the exact negation of the sale line, for every order paid out on an
  earlier payout and cancelled before this period's end. A closed payout is never rewritten;
- commission per line: face value × the merchant's commission percent, rounded half up to the
  cent (integer cents in SQL, so Postgres and SQLite agree). Payout totals are the plain sums
  of their lines, so a statement always adds up to its totals;
- one payout per (programme, merchant, currency, period): merchants are global, programmes are
  the unit of scoping, and a total of two currencies is no amount.

Invariants and what holds them:
- each order on at most one sale line and one adjustment line: unique (order, kind);
- one payout per (programme, merchant, currency, period): unique constraint, the insert skips a
  payout that exists (ON CONFLICT DO NOTHING), so re-running a closed period changes nothing;
- closes run one at a time on Postgres (transaction-scoped advisory lock): two parallel closes
  of a period give one payout, the second finds nothing left to take;
- a committed payout and its lines never change except the payout's status along
  PAYOUT_TRANSITIONS: Postgres triggers (migration `payouts`) refuse the rest, whatever
  the client; these services lock the row and check the table before they write."""

# The SQL below is assembled from the models' table names only; every value is a parameter.
# ruff: noqa: S608

from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Campaign, Merchant, Reward
from orders.errors import PayoutPeriodInvalidError, PayoutPeriodNotOverError
from orders.models import PAYOUT_TRANSITIONS, Order, Payout, PayoutLine
from plum.actors import SYSTEM, Actor
from plum.errors import InvalidInputError
from plum.services.audit import audit_log

PeriodKind = Merchant.PayoutPeriod


def payout_period_containing(kind: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the `kind` period containing `at`: weekly periods are ISO weeks,
    Monday 00:00 UTC to the next Monday; monthly ones the 1st 00:00 UTC to the next 1st."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == PeriodKind.WEEKLY:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if kind == PeriodKind.MONTHLY:
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else (start.replace(month=start.month + 1))
        )
        return start, end
    raise PayoutPeriodInvalidError(f"Unknown payout period {kind!r}.")


def payout_period_last_closed(kind: str, now: datetime) -> tuple[datetime, datetime]:
    """The latest `kind` period that has ended at `now`."""
    current_start, _ = payout_period_containing(kind, now)
    return payout_period_containing(kind, current_start - timedelta(microseconds=1))


def _periods_ending_at(period_end: datetime) -> list[tuple[str, datetime, datetime]]:
    if timezone.is_naive(period_end):
        raise PayoutPeriodInvalidError(fields={"period_end": ["Give an aware datetime (UTC)."]})
    periods = []
    for kind in PeriodKind.values:
        start, end = payout_period_last_closed(kind, period_end)
        if end == period_end:
            periods.append((kind, start, end))
    if not periods:
        raise PayoutPeriodInvalidError(
            fields={"period_end": [f"{period_end.isoformat()} ends no payout period."]}
        )
    return periods


def payouts_close(
    *, period_end: datetime | None = None, now: datetime | None = None, actor: Actor = SYSTEM
) -> list[Payout]:
    """Close the payouts of every merchant for the period(s) ending at `period_end` (a weekly
    and/or monthly boundary), or by default for the latest ended period of each kind. Returns
    the payouts created; closing a period again creates nothing and changes nothing.

    Set-based: per period one INSERT ... SELECT of payouts, one of adjustment lines, one of sale
    lines and one UPDATE of totals, whatever the number of orders."""
    now = now or timezone.now()
    if period_end is None:
        periods = [(kind, *payout_period_last_closed(kind, now)) for kind in PeriodKind.values]
    else:
        periods = _periods_ending_at(period_end)
        if period_end > now:
            raise PayoutPeriodNotOverError(period_end=period_end.isoformat())
    created: list[Payout] = []
    with transaction.atomic(durable=True):
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('plum.payouts_close'))")
        for kind, start, end in periods:
            created += _close_period(kind=kind, start=start, end=end, now=now, actor=actor)
    return created


_TABLES = {
    "order": Order._meta.db_table,
    "campaign": Campaign._meta.db_table,
    "reward": Reward._meta.db_table,
    "merchant": Merchant._meta.db_table,
    "payout": Payout._meta.db_table,
    "line": PayoutLine._meta.db_table,
}

# Orders to pay out: completed before the end, not cancelled by then, on no sale line yet.
_SALES = """
    FROM {order} o
    JOIN {campaign} c ON c.id = o.campaign_id
    JOIN {reward} r ON r.id = c.reward_id
    JOIN {merchant} m ON m.id = r.merchant_id
    WHERE m.payout_period = %(kind)s
      AND NOT o.is_test
      AND o.completed_at IS NOT NULL
      AND o.completed_at < %(end)s
      AND (o.cancelled_at IS NULL OR o.cancelled_at >= %(end)s)
      AND NOT EXISTS (
          SELECT 1 FROM {line} done WHERE done.order_id = o.id AND done.kind = 'sale')
"""

# Sale lines to take back: the order was cancelled before the end, and is not adjusted yet.
# The adjustment goes to the merchant, programme and currency that were paid.
_ADJUSTMENTS = """
    FROM {line} s
    JOIN {payout} sp ON sp.id = s.payout_id
    JOIN {order} o ON o.id = s.order_id
    JOIN {merchant} m ON m.id = sp.merchant_id
    WHERE s.kind = 'sale'
      AND m.payout_period = %(kind)s
      AND o.status = 'cancelled'
      AND o.cancelled_at < %(end)s
      AND NOT EXISTS (
          SELECT 1 FROM {line} done WHERE done.order_id = s.order_id AND done.kind = 'adjustment')
"""

_INSERT_PAYOUTS = (
    """
    INSERT INTO {payout} (programme_id, merchant_id, currency, period_kind, period_start,
        period_end, status, gross, commission, net, order_count, adjustment_count, created_at,
        paid_reference)
    SELECT k.programme_id, k.merchant_id, k.currency, %(kind)s, %(start)s, %(end)s, 'draft',
        0, 0, 0, 0, 0, %(now)s, ''
    FROM (
        SELECT o.programme_id, r.merchant_id, o.currency """
    + _SALES
    + """
        UNION
        SELECT sp.programme_id, sp.merchant_id, sp.currency """
    + _ADJUSTMENTS
    + """
    ) k
    WHERE 1 = 1
    ON CONFLICT DO NOTHING
"""
)

_DRAFT_OF = """
    JOIN {payout} p ON p.programme_id = {programme} AND p.merchant_id = {merchant}
        AND p.currency = {currency} AND p.period_start = %(start)s AND p.period_end = %(end)s
        AND p.status = 'draft'
"""

_INSERT_ADJUSTMENTS = """
    INSERT INTO {line} (payout_id, order_id, kind, occurred_at, commission_percent, face_value,
        commission, net)
    SELECT p.id, s.order_id, 'adjustment', o.cancelled_at, s.commission_percent, -s.face_value,
        -s.commission, -s.net """ + _ADJUSTMENTS.replace(
    "WHERE s.kind",
    _DRAFT_OF.format(
        payout="{payout}",
        programme="sp.programme_id",
        merchant="sp.merchant_id",
        currency="sp.currency",
    )
    + "    WHERE s.kind",
)

# Money in integer cents, so that rounding is exact on every database: commission =
# round_half_up(face_cents * basis_points / 10000), basis points = commission percent * 100.
_INSERT_SALES = (
    """
    INSERT INTO {line} (payout_id, order_id, kind, occurred_at, commission_percent, face_value,
        commission, net)
    SELECT p.id, x.order_id, 'sale', x.completed_at, x.percent,
        x.face_cents / 100.0,
        ((x.face_cents * x.basis_points + 5000) / 10000) / 100.0,
        (x.face_cents - (x.face_cents * x.basis_points + 5000) / 10000) / 100.0
    FROM (
        SELECT o.id AS order_id, o.programme_id, r.merchant_id, o.currency, o.completed_at,
            m.commission_percent AS percent,
            CAST(ROUND(o.value * 100) AS BIGINT) AS face_cents,
            CAST(ROUND(m.commission_percent * 100) AS BIGINT) AS basis_points """
    + _SALES
    + """
    ) x """
    + _DRAFT_OF.format(
        payout="{payout}",
        programme="x.programme_id",
        merchant="x.merchant_id",
        currency="x.currency",
    )
    + """
    ORDER BY x.order_id
"""
)

_DROP_EMPTY_DRAFTS = """
    DELETE FROM {payout}
    WHERE status = 'draft' AND period_start = %(start)s AND period_end = %(end)s
      AND NOT EXISTS (SELECT 1 FROM {line} l WHERE l.payout_id = {payout}.id)
"""

_CLOSE_DRAFTS = """
    UPDATE {payout} SET
        gross = COALESCE(
            (SELECT SUM(l.face_value) FROM {line} l WHERE l.payout_id = {payout}.id), 0),
        commission = COALESCE(
            (SELECT SUM(l.commission) FROM {line} l WHERE l.payout_id = {payout}.id), 0),
        net = COALESCE((SELECT SUM(l.net) FROM {line} l WHERE l.payout_id = {payout}.id), 0),
        order_count = (
            SELECT COUNT(*) FROM {line} l WHERE l.payout_id = {payout}.id AND l.kind = 'sale'),
        adjustment_count = (
            SELECT COUNT(*) FROM {line} l
            WHERE l.payout_id = {payout}.id AND l.kind = 'adjustment'),
        status = 'closed',
        closed_at = %(now)s
    WHERE status = 'draft' AND period_start = %(start)s AND period_end = %(end)s
"""


def _sql(template: str) -> str:
    return template.format(**_TABLES)


def _close_period(*, kind, start, end, now, actor) -> list[Payout]:
    adapt = connection.ops.adapt_datetimefield_value
    params = {"kind": kind, "start": adapt(start), "end": adapt(end), "now": adapt(now)}
    with connection.cursor() as cursor:
        cursor.execute(_sql(_INSERT_PAYOUTS), params)
        # Adjustments before sales: a sale written by this close is never taken back by it.
        cursor.execute(_sql(_INSERT_ADJUSTMENTS), params)
        cursor.execute(_sql(_INSERT_SALES), params)
        # A payout whose only order changed between the statements above has no line: drop it.
        cursor.execute(_sql(_DROP_EMPTY_DRAFTS), params)
        ids = list(
            Payout.objects.filter(
                status=Payout.Status.DRAFT, period_start=start, period_end=end
            ).values_list("pk", flat=True)
        )
        cursor.execute(_sql(_CLOSE_DRAFTS), params)
    payouts = list(Payout.objects.filter(pk__in=ids).select_related("merchant").order_by("pk"))
    for payout in payouts:
        audit_log(
            actor=actor,
            action="payout.close",
            obj=payout,
            changes={
                "status": [None, payout.status],
                "merchant": [None, payout.merchant.name],
                "period": [
                    None,
                    f"{payout.period_start.isoformat()}/{payout.period_end.isoformat()}",
                ],
                "currency": [None, payout.currency],
                "gross": [None, str(payout.gross)],
                "commission": [None, str(payout.commission)],
                "net": [None, str(payout.net)],
                "order_count": [None, payout.order_count],
                "adjustment_count": [None, payout.adjustment_count],
            },
        )
    return payouts


def _lock(payout: Payout) -> Payout:
    return Payout.objects.select_for_update(of=("self",), no_key=True).get(pk=payout.pk)


def _user_or_none(actor: Actor):
    return actor if isinstance(actor, AbstractBaseUser) else None


def _transition(*, payout: Payout, target: str, actor: Actor, action: str, data: dict) -> Payout:
    with transaction.atomic(durable=True):
        current = _lock(payout)
        PAYOUT_TRANSITIONS.check(current.status, target)
        before = current.status
        updated = Payout.objects.filter(
            pk=current.pk, status__in=PAYOUT_TRANSITIONS.sources_for(target)
        ).update(status=target, **data)
        if updated != 1:  # cannot happen under the row lock
            raise RuntimeError(f"Payout {current.pk} left {current.status} under its lock")
        current.refresh_from_db()
        audit_log(
            actor=actor,
            action=action,
            obj=current,
            changes={
                "status": [before, target],
                **{
                    name: [None, value.pk if hasattr(value, "pk") else value]
                    for name, value in data.items()
                    if value not in (None, "")
                },
            },
        )
        return current


def payout_approve(*, payout: Payout, actor: Actor) -> Payout:
    """closed -> approved, recording who approved; any other state refuses with
    invalid_transition and changes nothing."""
    return _transition(
        payout=payout,
        target=Payout.Status.APPROVED,
        actor=actor,
        action="payout.approve",
        data={"approved_at": timezone.now(), "approved_by": _user_or_none(actor)},
    )


def payout_mark_paid(*, payout: Payout, actor: Actor, reference: str = "") -> Payout:
    """approved -> paid, recording who paid and the transfer's reference; a payout that is not
    approved refuses with invalid_transition and changes nothing."""
    reference = (reference or "").strip()
    if len(reference) > Payout._meta.get_field("paid_reference").max_length:
        raise InvalidInputError(fields={"reference": ["At most 120 characters."]})
    return _transition(
        payout=payout,
        target=Payout.Status.PAID,
        actor=actor,
        action="payout.mark_paid",
        data={
            "paid_at": timezone.now(),
            "paid_by": _user_or_none(actor),
            "paid_reference": reference,
        },
    )
