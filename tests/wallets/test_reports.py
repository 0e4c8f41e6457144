"""Wallet reports: filters and totals against hand-computed figures, the streamed and
formula-safe CSV, the month-end statement's identities, the chart, scoping and query counts."""

import csv
import io
from datetime import UTC, date, datetime

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from plum import roles
from plum.actors import SYSTEM
from tests.factories import MemberFactory
from wallets.models import Account, AccountKind, Reason
from wallets.reports import (
    ReportFilter,
    chart_bars,
    earn_burn_per_day,
    report_rows,
    report_totals,
    statement_months,
)
from wallets.services import (
    points_adjust,
    points_burn,
    points_earn,
    points_expire,
    transaction_reverse,
)

pytestmark = pytest.mark.django_db

REPORT = "admin:wallets_report"
REPORT_CSV = "admin:wallets_report_csv"
STATEMENT = "admin:wallets_statement"
STATEMENT_CSV = "admin:wallets_statement_csv"


@pytest.fixture
def at(monkeypatch):
    """at(y, m, d, h=12) -> run the next postings as if it were then (the clock is the one
    outside thing we steer: auto_now_add and the audit log read it)."""

    def travel(year, month, day, hour=12):
        moment = datetime(year, month, day, hour, tzinfo=UTC)
        monkeypatch.setattr(timezone, "now", lambda: moment)

    return travel


@pytest.fixture
def history(programme, other_programme, at, monkeypatch):
    """Alpha: EMP-001 (ends with 40) and EMP-002 (ends with 300); beta: one earn of 1000.

    date        member   what                                   wallet after
    2026-10-05  EMP-001  earn 500 milestone, ref HR-1           500
    2026-10-20  EMP-002  earn 300 programme rule, ref HR-2      300
    2026-11-03  EMP-001  burn 120, ref BK-0001                  380
    2026-11-10  EMP-001  adjust -30 ("duplicate award")         350
    2026-11-15  EMP-002  burn 100, ref BK-0002                  200
    2026-11-16  EMP-002  reversal of that burn (order cancelled) 300
    2026-11-25  EMP-001  expiry of 350 (1-month policy)           0
    now         EMP-001  earn 40, ref HR-3                       40
    now         beta     earn 1000
    """
    alice = MemberFactory(programme=programme, external_id="EMP-001", name="Alice")
    bob = MemberFactory(programme=programme, external_id="EMP-002", name="Bob")
    carol = MemberFactory(programme=other_programme, external_id="EMP-001", name="Carol")
    at(2026, 10, 5)
    points_earn(member=alice, points=500, reference="HR-1", idempotency_key="e1", actor=SYSTEM)
    at(2026, 10, 20)
    points_earn(
        member=bob,
        points=300,
        reason=Reason.PROGRAMME_RULE,
        reference="HR-2",
        idempotency_key="e2",
        actor=SYSTEM,
    )
    at(2026, 11, 3)
    points_burn(member=alice, points=120, reference="BK-0001", idempotency_key="b1", actor=SYSTEM)
    at(2026, 11, 10)
    points_adjust(
        member=alice, points=-30, note="duplicate award", idempotency_key="a1", actor=SYSTEM
    )
    at(2026, 11, 15)
    burn, _ = points_burn(
        member=bob, points=100, reference="BK-0002", idempotency_key="b2", actor=SYSTEM
    )
    at(2026, 11, 16)
    transaction_reverse(transaction=burn, reason=Reason.ORDER_CANCELLED, actor=SYSTEM)
    at(2026, 11, 25)
    points_expire(
        wallet=Account.objects.get(member=alice),
        months=1,
        as_of=datetime(2026, 11, 25, 12, tzinfo=UTC),
    )
    monkeypatch.undo()
    points_earn(member=alice, points=40, reference="HR-3", idempotency_key="e3", actor=SYSTEM)
    points_earn(member=carol, points=1000, reference="HR-9", idempotency_key="e9", actor=SYSTEM)
    return {"alice": alice, "bob": bob, "carol": carol}


def _totals(**values):
    base = {
        "rows": 0,
        "net": 0,
        "earned": 0,
        "burned": 0,
        "expired": 0,
        "adjusted": 0,
        "reversed": 0,
    }
    return {**base, **values}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (
            {},
            _totals(
                rows=8, earned=840, burned=220, expired=350, adjusted=-30, reversed=100, net=340
            ),
        ),
        (
            {"date_from": date(2026, 11, 1), "date_to": date(2026, 11, 30)},
            _totals(rows=5, burned=220, expired=350, adjusted=-30, reversed=100, net=-500),
        ),
        (
            {"date_from": date(2026, 10, 20), "date_to": date(2026, 11, 3)},
            _totals(rows=2, earned=300, burned=120, net=180),
        ),
        ({"member": "EMP-002"}, _totals(rows=3, earned=300, burned=100, reversed=100, net=300)),
        ({"kind": "burn"}, _totals(rows=2, burned=220, net=-220)),
        ({"reason": "order_cancelled"}, _totals(rows=1, reversed=100, net=100)),
        ({"member": "EMP-001", "kind": "earn"}, _totals(rows=2, earned=540, net=540)),
        ({"member": "NOBODY"}, _totals()),
    ],
)
def test_totals_of_a_filter_match_the_hand_computed_figures(programme, history, filters, expected):
    # given
    flt = ReportFilter(programme_ids=[programme.pk], **filters)
    # when
    totals = report_totals(flt)
    # then
    assert totals == expected
    assert totals["net"] == sum(row["amount"] for row in report_rows(flt)[0])


def test_totals_are_one_aggregate_query(programme, history, django_assert_num_queries):
    # given
    flt = ReportFilter(programme_ids=[programme.pk], kind="burn")
    # when / then
    with django_assert_num_queries(1):
        report_totals(flt)


def test_each_row_shows_member_points_balance_after_reason_actor_and_reference(programme, history):
    # given
    flt = ReportFilter(programme_ids=[programme.pk], member="EMP-001")
    # when
    rows, has_next = report_rows(flt)
    # then: newest first, each with the wallet's balance right after it
    assert not has_next
    assert [
        (
            r["account__member__external_id"],
            r["transaction__kind"],
            r["transaction__reason"],
            r["amount"],
            r["balance_after"],
            r["transaction__reference"],
            r["transaction__actor_label"],
        )
        for r in rows
    ] == [
        ("EMP-001", "earn", "milestone_award", 40, 40, "HR-3", "system"),
        ("EMP-001", "expiry", "points_expiry", -350, 0, "expiry 2026-11-25", "system"),
        ("EMP-001", "adjustment", "manual_adjustment", -30, 350, "", "system"),
        ("EMP-001", "burn", "redemption", -120, 380, "BK-0001", "system"),
        ("EMP-001", "earn", "milestone_award", 500, 500, "HR-1", "system"),
    ]


def test_rows_of_another_programme_are_never_in_the_report(programme, history):
    # when
    rows, _ = report_rows(ReportFilter(programme_ids=[programme.pk]))
    # then
    assert {r["transaction__programme__slug"] for r in rows} == {"alpha"}
    assert len(rows) == 8


# --- the admin pages -------------------------------------------------------------------------


@pytest.fixture
def finance_client(client, make_user, programme):
    client.force_login(make_user(roles.FINANCE, programme, username="fin-alpha"))
    return client


def test_the_report_page_shows_rows_totals_and_chart(finance_client, history):
    # when
    response = finance_client.get(
        reverse(REPORT), {"date_from": "2026-11-01", "date_to": "2026-11-30"}
    )
    # then
    assert response.status_code == 200
    assert response.context["totals"] == _totals(
        rows=5, burned=220, expired=350, adjusted=-30, reversed=100, net=-500
    )
    assert len(response.context["rows"]) == 5
    html = response.content.decode()
    assert "BK-0002" in html
    assert "<svg" in html
    assert "<script" not in html.split('id="content-main"')[1]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"date_from": "2026-11-30", "date_to": "2026-11-01"}, "ends before it starts"),
        ({"date_from": "not a date"}, "Enter a valid date."),
        ({"kind": "gift"}, "Select a valid choice."),
    ],
)
def test_a_bad_filter_shows_why_and_lists_nothing(finance_client, history, params, error):
    # when
    response = finance_client.get(reverse(REPORT), params)
    # then
    assert response.status_code == 200
    assert error in response.content.decode()
    assert "rows" not in response.context


@pytest.mark.parametrize("name", [REPORT, REPORT_CSV, STATEMENT, STATEMENT_CSV])
def test_another_programme_is_404(finance_client, other_programme, history, name):
    # when
    response = finance_client.get(reverse(name), {"programme": other_programme.pk})
    # then
    assert response.status_code == 404


@pytest.mark.parametrize("name", [REPORT, REPORT_CSV, STATEMENT, STATEMENT_CSV])
def test_support_agents_may_not_read_reports(client, make_user, programme, name):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(reverse(name))
    # then
    assert response.status_code == 403


@pytest.mark.parametrize("name", [REPORT, REPORT_CSV, STATEMENT, STATEMENT_CSV])
def test_anonymous_is_sent_to_log_in(client, name):
    # when
    response = client.get(reverse(name))
    # then
    assert response.status_code == 302
    assert "/login/" in response["Location"]


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.FINANCE])
def test_managers_and_finance_see_their_programme(client, make_user, programme, history, role):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(reverse(REPORT))
    # then
    assert response.status_code == 200
    assert response.context["totals"]["net"] == 340


def test_a_platform_admin_sees_every_programme(client, make_user, history):
    # given
    client.force_login(make_user(roles.PLATFORM_ADMIN))
    # when
    response = client.get(reverse(REPORT))
    # then
    assert response.context["totals"]["net"] == 1340


def _more_history(member, count):
    for i in range(count):
        points_earn(member=member, points=5, idempotency_key=f"more-{i}", actor=SYSTEM)


def test_the_report_page_costs_the_same_queries_however_many_rows(
    finance_client, history, django_assert_max_num_queries
):
    # given: session, user, permissions (4); report scope and programmes (2); the member's
    # wallets, rows, totals, chart (4); the admin sidebar's permission checks (3)
    url = reverse(REPORT)
    params = {"member": "EMP-001", "date_from": "2026-01-01"}
    finance_client.get(url, params)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        finance_client.get(url, params)
    _more_history(history["alice"], 30)
    # when
    with django_assert_max_num_queries(13), CaptureQueriesContext(connection) as many:
        response = finance_client.get(url, params)
    # then
    assert len(response.context["rows"]) == 35
    assert len(many) == len(few)


# --- CSV -------------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_csv_is_exactly_the_filtered_rows(finance_client, programme, history):
    # given
    params = {"member": "EMP-002"}
    page_rows, _ = report_rows(ReportFilter(programme_ids=[programme.pk], member="EMP-002"))
    # when
    response = finance_client.get(reverse(REPORT_CSV), params)
    # then
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv"
    header, *rows = _csv(response)
    assert header[:10] == [
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
    ]
    assert [(r[1], r[3], r[5], r[7], r[8], r[9]) for r in rows] == [
        (
            str(r["transaction_id"]),
            "EMP-002",
            r["transaction__kind"],
            str(r["amount"]),
            str(r["balance_after"]),
            r["transaction__reference"],
        )
        for r in page_rows
    ]
    assert [r[7] for r in rows] == ["100", "-100", "300"]


def test_streaming_the_csv_costs_the_same_queries_however_many_rows(finance_client, history):
    # given
    url = reverse(REPORT_CSV)
    with CaptureQueriesContext(connection) as few:
        few_rows = _csv(finance_client.get(url))
    _more_history(history["alice"], 40)
    # when
    with CaptureQueriesContext(connection) as many:
        many_rows = _csv(finance_client.get(url))
    # then
    assert (len(few_rows), len(many_rows)) == (1 + 8, 1 + 48)
    assert len(many) == len(few)


def test_csv_cells_cannot_run_as_formulas(finance_client, programme):
    # given
    member = MemberFactory(programme=programme, external_id="=cmd|' /C calc'!A0", name="@SUM(1)")
    points_earn(
        member=member,
        points=10,
        reference='+HYPERLINK("http://evil")',
        idempotency_key="x",
        actor=SYSTEM,
    )
    # when
    header, row = _csv(finance_client.get(reverse(REPORT_CSV)))
    # then
    assert row[3:5] == ["'=cmd|' /C calc'!A0", "'@SUM(1)"]
    assert row[9] == '\'+HYPERLINK("http://evil")'
    assert row[7] == "10"


# --- the statement ---------------------------------------------------------------------------


def _this_month():
    return timezone.localdate().replace(day=1)


def test_the_statement_matches_the_hand_computed_months(programme, history):
    # when
    october, november, *rest = statement_months(
        programme_id=programme.pk, first=date(2026, 10, 1), last=_this_month()
    )
    # then
    assert (october.opening, october.earned, october.closing) == (0, 800, 800)
    assert (
        november.opening,
        november.earned,
        november.burned,
        november.expired,
        november.adjusted,
        november.reversed,
        november.closing,
    ) == (800, 0, 220, 350, -30, 100, 300)
    assert rest[-1].closing == 340


def test_closing_of_the_current_month_is_the_sum_of_the_wallet_balances(programme, history):
    # given
    balances = sum(
        Account.objects.filter(programme=programme, kind=AccountKind.MEMBER_WALLET).values_list(
            "balance", flat=True
        )
    )
    # when
    lines = statement_months(programme_id=programme.pk, first=_this_month(), last=_this_month())
    # then
    assert balances == 340
    assert lines[-1].closing == lines[-1].wallet_balances == balances


def test_each_month_opens_where_the_last_one_closed(programme, history):
    # when: the months one at a time, as a reader asks for them
    months = statement_months(programme_id=programme.pk, first=date(2026, 9, 1), last=_this_month())
    singles = [
        statement_months(programme_id=programme.pk, first=line.month, last=line.month)[0]
        for line in months
    ]
    # then
    assert singles == months
    assert all(nxt.opening == prev.closing for prev, nxt in zip(months, months[1:], strict=False))
    assert all(
        line.closing
        == line.opening + line.earned - line.burned - line.expired + line.adjusted + line.reversed
        for line in months
    )


def test_the_statement_page_and_csv(finance_client, programme, history):
    # given
    params = {"programme": programme.pk, "first": "2026-10", "last": "2026-11"}
    # when
    page = finance_client.get(reverse(STATEMENT), params)
    download = finance_client.get(reverse(STATEMENT_CSV), params)
    # then
    assert page.status_code == 200
    assert [line.closing for line in page.context["lines"]] == [800, 300]
    assert _csv(download) == [
        ["programme", "month", "opening", "earned", "burned", "expired", "adjusted", "reversed",
         "closing"],
        ["alpha", "2026-10", "0", "800", "0", "0", "0", "0", "800"],
        ["alpha", "2026-11", "800", "0", "220", "350", "-30", "100", "300"],
    ]  # fmt: skip


def test_the_statement_page_shows_the_current_month_matching_the_balances(
    finance_client, programme, history
):
    # when
    response = finance_client.get(reverse(STATEMENT), {"programme": programme.pk})
    # then: by default the last 13 months up to this one
    lines = response.context["lines"]
    assert len(lines) == 13
    assert lines[-1].wallet_balances == lines[-1].closing == 340
    assert "(matches)" in response.content.decode()


# --- the chart -------------------------------------------------------------------------------


def test_earn_and_burn_per_day(programme, history):
    # when
    figures = earn_burn_per_day(
        ReportFilter(
            programme_ids=[programme.pk], date_from=date(2026, 11, 1), date_to=date(2026, 11, 30)
        )
    )
    # then: every day present; the reversal, adjustment and expiry are not earn or burn
    assert len(figures) == 30
    assert {(f.day.day, f.earned, f.burned) for f in figures if f.earned or f.burned} == {
        (3, 0, 120),
        (15, 0, 100),
    }


def test_the_chart_is_drawn_to_scale(programme, history):
    # given
    figures = earn_burn_per_day(
        ReportFilter(
            programme_ids=[programme.pk], date_from=date(2026, 10, 1), date_to=date(2026, 10, 31)
        )
    )
    # when
    chart = chart_bars(figures, width=620, height=100)
    # then: the peak (500 on the 5th) is full height; 300 on the 20th is 60%
    assert chart["peak"] == 500
    assert len(chart["earned"]) == len(chart["burned"]) == 31
    assert (chart["earned"][4].height, chart["earned"][4].y) == (100.0, 0.0)
    assert chart["earned"][19].height == 60.0
    assert chart["earned"][19].label == "2026-10-20: 300 points earned"
