"""Reward Points & Wallet Reports, for admins and finance. Read-only.

- `report_rows` / `report_totals` / `report_csv_rows`: the member-wallet postings of a filter
  (date range, member, kind, reason), each with its balance after, reason, actor and
  reference; the totals in one aggregate query; the CSV streamed from a server-side cursor.
- `statement_months`: the month-end statement of a programme (opening, earned, burned,
  expired, adjusted, reversed, closing). Built from one GROUP BY over the programme's wallet
  postings, with opening(N) = the sum of everything before month N and closing(N) =
  opening(N) + the month's movements, so opening(N+1) == closing(N) by construction; the
  current month's closing equals the sum of the wallet balances (read in the same snapshot).
- `earn_burn_per_day` and `chart_svg`: the earn vs burn chart, drawn here as inline SVG.

Every function takes the programme ids the caller may see (`report_programme_ids`): the scope
is decided once, by the caller, and a programme outside it is simply not there."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import connection, transaction
from django.db.models import Count, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from plum import roles, selectors
from wallets.models import Account, AccountKind, Posting, TransactionKind

PAGE_SIZE = 100
CSV_CHUNK = 5000
CSV_HEADER = [
    "posted_at",
    "transaction",
    "programme",
    "member",
    "member_name",
    "kind",
    "reason",
    "points",
    "balance_after",
    "reference",
    "actor",
    "note",
]
_ROW_FIELDS = [
    "id",
    "transaction__created_at",
    "transaction_id",
    "transaction__programme__slug",
    "account__member__external_id",
    "account__member__name",
    "transaction__kind",
    "transaction__reason",
    "amount",
    "balance_after",
    "transaction__reference",
    "transaction__actor_label",
    "transaction__note",
]


def report_programme_ids(principal) -> list[int]:
    """The programmes whose wallet reports `principal` may read: where it holds the finance
    or the manage permission (platform admins hold both everywhere). One query."""
    allowed = selectors.programmes_for(principal, roles.FINANCE_PERM) | selectors.programmes_for(
        principal, roles.MANAGE
    )
    return sorted(allowed.values_list("pk", flat=True).distinct())


@dataclass(frozen=True)
class ReportFilter:
    """`programme_ids` is the scope (already narrowed to the caller's programmes); dates are
    inclusive days in the current time zone; `member` is an external id."""

    programme_ids: list[int]
    date_from: date | None = None
    date_to: date | None = None
    member: str = ""
    kind: str = ""
    reason: str = ""
    wallet_ids: list[int] | None = field(default=None, compare=False)


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def report_filter_resolve(flt: ReportFilter) -> ReportFilter:
    """Turn the member's external id into its wallets (one query), so the report reads the
    member's postings through the (account, id) index."""
    if not flt.member:
        return flt
    wallet_ids = list(
        Account.objects.filter(
            programme_id__in=flt.programme_ids,
            kind=AccountKind.MEMBER_WALLET,
            member__external_id=flt.member,
        ).values_list("pk", flat=True)
    )
    return ReportFilter(**{**flt.__dict__, "wallet_ids": wallet_ids})


def report_postings(flt: ReportFilter) -> QuerySet:
    """Member-wallet postings matching the filter (unordered)."""
    postings = Posting.objects.filter(
        transaction__programme_id__in=flt.programme_ids,
        account__kind=AccountKind.MEMBER_WALLET,
    )
    if flt.member:
        if flt.wallet_ids is None:
            flt = report_filter_resolve(flt)
        postings = postings.filter(account_id__in=flt.wallet_ids)
    if flt.date_from:
        postings = postings.filter(transaction__created_at__gte=_start_of(flt.date_from))
    if flt.date_to:
        postings = postings.filter(
            transaction__created_at__lt=_start_of(flt.date_to + timedelta(days=1))
        )
    if flt.kind:
        postings = postings.filter(transaction__kind=flt.kind)
    if flt.reason:
        postings = postings.filter(transaction__reason=flt.reason)
    return postings


def _ordered(flt: ReportFilter) -> QuerySet:
    # Newest first. Transactions are created in id order, so the transaction id orders them
    # as their time does, and the (programme, -created_at) index serves date ranges.
    return report_postings(flt).order_by("-transaction__created_at", "-transaction_id", "-id")


def report_rows(flt: ReportFilter, *, page: int = 1) -> tuple[list[dict], bool]:
    """One page of rows (dicts of _ROW_FIELDS) and whether there is a next page. One query:
    no row count, which on a million postings would cost more than the page itself."""
    start = (max(page, 1) - 1) * PAGE_SIZE
    rows = list(_ordered(flt).values(*_ROW_FIELDS)[start : start + PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


def _kind_sum(kind: str, sign: int = 1):
    total = Coalesce(Sum("amount", filter=Q(transaction__kind=kind)), Value(0))
    return total if sign > 0 else -total


_TOTALS = {
    "earned": lambda: _kind_sum(TransactionKind.EARN),
    "burned": lambda: _kind_sum(TransactionKind.BURN, -1),
    "expired": lambda: _kind_sum(TransactionKind.EXPIRY, -1),
    "adjusted": lambda: _kind_sum(TransactionKind.ADJUSTMENT),
    "reversed": lambda: _kind_sum(TransactionKind.REVERSAL),
}


def report_totals(flt: ReportFilter) -> dict[str, int]:
    """Totals of the filter, in points, as wallets see them: earned, burned and expired are
    positive amounts; adjusted and reversed are signed (a reversed burn gives points back);
    net = earned - burned - expired + adjusted + reversed = the sum of the rows' points.
    One aggregate query."""
    totals = report_postings(flt).aggregate(
        rows=Count("id"),
        net=Coalesce(Sum("amount"), Value(0)),
        **{name: make() for name, make in _TOTALS.items()},
    )
    return {name: int(value) for name, value in totals.items()}


def report_csv_rows(flt: ReportFilter):
    """Exactly the filtered rows, in report order, as CSV cells. Read from a server-side
    cursor in chunks (`.iterator()`), so a million rows never sit in memory."""
    rows = _ordered(flt).values_list(*_ROW_FIELDS).iterator(chunk_size=CSV_CHUNK)
    for (
        _id,
        created_at,
        txn_id,
        programme,
        member,
        member_name,
        kind,
        reason,
        amount,
        balance_after,
        reference,
        actor,
        note,
    ) in rows:
        yield [
            created_at.isoformat(),
            txn_id,
            programme,
            member,
            member_name,
            kind,
            reason,
            amount,
            balance_after,
            reference,
            actor,
            note,
        ]


# --- the chart -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayFigures:
    day: date
    earned: int
    burned: int


def earn_burn_per_day(flt: ReportFilter, *, days: int = 31) -> list[DayFigures]:
    """Points earned and burned per day over the filter's date range (at most `days` days,
    ending at date_to or today), every day present. One GROUP BY query."""
    last = flt.date_to or timezone.localdate()
    first = max(flt.date_from or last - timedelta(days=days - 1), last - timedelta(days=days - 1))
    scoped = ReportFilter(**{**flt.__dict__, "date_from": first, "date_to": last, "kind": ""})
    grouped = (
        report_postings(scoped)
        .filter(transaction__kind__in=[TransactionKind.EARN, TransactionKind.BURN])
        .annotate(day=TruncDate("transaction__created_at"))
        .order_by()
        .values("day")
        .annotate(earned=_TOTALS["earned"](), burned=_TOTALS["burned"]())
    )
    by_day = {row["day"]: row for row in grouped}
    figures = []
    day = first
    while day <= last:
        row = by_day.get(day, {})
        figures.append(DayFigures(day, int(row.get("earned", 0)), int(row.get("burned", 0))))
        day += timedelta(days=1)
    return figures


@dataclass(frozen=True)
class ChartBar:
    x: float
    y: float
    height: float
    label: str


def chart_bars(figures: list[DayFigures], *, width: int = 720, height: int = 160) -> dict:
    """Geometry for the template's inline SVG: two bars a day (earned, burned), scaled to the
    largest figure. Drawn by the app itself: no script, no external asset."""
    peak = max([1, *(f.earned for f in figures), *(f.burned for f in figures)])
    slot = width / max(len(figures), 1)
    bar = max(slot / 2 - 1, 1)
    earned, burned = [], []
    for i, figure in enumerate(figures):
        for value, bars, offset, what in (
            (figure.earned, earned, 0, "earned"),
            (figure.burned, burned, bar, "burned"),
        ):
            h = round(value / peak * height, 1)
            bars.append(
                ChartBar(
                    x=round(i * slot + offset, 1),
                    y=round(height - h, 1),
                    height=h,
                    label=f"{figure.day.isoformat()}: {value} points {what}",
                )
            )
    return {
        "width": width,
        "height": height,
        "bar_width": round(bar, 1),
        "peak": peak,
        "earned": earned,
        "burned": burned,
        "first": figures[0].day if figures else None,
        "last": figures[-1].day if figures else None,
    }


def chart_svg(chart: dict) -> str:
    """The chart as inline SVG markup (escaped here, safe to insert): one <rect> per bar with
    a <title> tooltip, a baseline and a legend. Built in Python rather than in the template,
    where formatting several hundred numbers costs more than the queries."""
    h, w = chart["height"], chart["width"]
    bars = format_html_join(
        "",
        '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>',
        (
            (what, bar.x, bar.y, chart["bar_width"], bar.height, bar.label)
            for what in ("earned", "burned")
            for bar in chart[what]
        ),
    )
    return format_html(
        '<svg class="wallet-chart" role="img" aria-label="Points earned and burned per day" '
        'width="{w}" height="{th}" viewBox="0 0 {w} {th}">'
        '<line x1="0" y1="{h}" x2="{w}" y2="{h}" stroke="#999"/>{bars}'
        '<rect class="earned" x="0" y="{ly}" width="10" height="10"/>'
        '<text class="legend" x="14" y="{ty}">earned</text>'
        '<rect class="burned" x="70" y="{ly}" width="10" height="10"/>'
        '<text class="legend" x="84" y="{ty}">burned</text>'
        '<text class="legend" x="{w}" y="10" text-anchor="end">peak {peak}</text></svg>',
        w=w,
        h=h,
        th=h + 20,
        ly=h + 8,
        ty=h + 17,
        bars=bars,
        peak=chart["peak"],
    )


# --- the month-end statement -----------------------------------------------------------------


@dataclass(frozen=True)
class StatementLine:
    programme_id: int
    month: date  # the first day of the month
    opening: int
    earned: int
    burned: int
    expired: int
    adjusted: int
    reversed: int
    closing: int
    # Only for the current month: the sum of the programme's wallet balances, read in the
    # same snapshot as the postings. Equal to `closing` while the ledger holds.
    wallet_balances: int | None = None

    @property
    def net(self) -> int:
        return self.closing - self.opening


STATEMENT_HEADER = [
    "programme",
    "month",
    "opening",
    "earned",
    "burned",
    "expired",
    "adjusted",
    "reversed",
    "closing",
]


def month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def statement_months(*, programme_id: int, first: date, last: date) -> list[StatementLine]:
    """The statement of each month from `first` to `last` (inclusive; any day of the month).
    Months run in the current time zone and a posting belongs to the month of its
    transaction's time. Two queries (the postings grouped by month, and for the current month
    the sum of wallet balances) in one REPEATABLE READ snapshot on Postgres, so the current
    month's closing and the balances describe the same instant."""
    first, last = month_start(first), month_start(last)
    end = _start_of(_next_month(last))
    current = month_start(timezone.localdate())
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            # Inside a caller's transaction, the caller's isolation holds instead.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        grouped = list(
            Posting.objects.filter(
                transaction__programme_id=programme_id,
                account__kind=AccountKind.MEMBER_WALLET,
                transaction__created_at__lt=end,
            )
            .annotate(month=TruncMonth("transaction__created_at"))
            .order_by()
            .values("month")
            .annotate(net=Sum("amount"), **{name: make() for name, make in _TOTALS.items()})
        )
        balances = None
        if first <= current <= last:
            balances = Account.objects.filter(
                programme_id=programme_id, kind=AccountKind.MEMBER_WALLET
            ).aggregate(total=Coalesce(Sum("balance"), Value(0)))["total"]
    current_balances = int(balances) if balances is not None else None
    by_month = {}
    opening = 0
    for row in grouped:
        month = row["month"]
        month = timezone.localtime(month).date() if isinstance(month, datetime) else month
        if month < first:
            opening += row["net"]
        else:
            by_month[month] = row
    lines = []
    month = first
    while month <= last:
        row = by_month.get(month, {})
        figures = {name: int(row.get(name, 0)) for name in _TOTALS}
        closing = opening + int(row.get("net", 0))
        lines.append(
            StatementLine(
                programme_id=programme_id,
                month=month,
                opening=opening,
                closing=closing,
                wallet_balances=current_balances if month == current else None,
                **figures,
            )
        )
        opening = closing
        month = _next_month(month)
    return lines


def statement_csv_rows(lines: list[StatementLine], programme_slug: str):
    for line in lines:
        yield [
            programme_slug,
            line.month.strftime("%Y-%m"),
            line.opening,
            line.earned,
            line.burned,
            line.expired,
            line.adjusted,
            line.reversed,
            line.closing,
        ]
