"""Payouts in the admin: Finance of a programme sees, approves, pays and exports its payouts
only; everyone else gets 403 (wrong role), 404 (wrong programme) or the login page."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.admin import payouts as payout_admin
from orders.models import Payout
from orders.services import payout_approve, payouts_close
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent
from tests.orders.payout_builders import (
    after,
    make_merchant,
    merchant_campaign,
    sell,
    weekly_period,
)

D = Decimal
pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/orders/payout/"


@pytest.fixture
def payouts(programme, other_programme):
    """The closed week's payouts: alpha's (two orders of a merchant called "=cmd") and beta's."""
    merchant = make_merchant(commission="2.50", name="=cmd")
    ours = merchant_campaign(programme, merchant)
    orders = [sell(ours), sell(ours)]
    sell(merchant_campaign(other_programme, merchant))
    _, end = weekly_period()
    payouts_close(period_end=end, now=after(end))
    alpha = Payout.objects.get(programme=programme)
    beta = Payout.objects.get(programme=other_programme)
    return alpha, beta, orders


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def read_csv(response):
    assert response.streaming
    assert response["Content-Type"] == "text/csv"
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_anonymous_is_sent_to_the_login_page(client, payouts):
    alpha, _, _ = payouts
    for url in [
        CHANGELIST,
        f"{CHANGELIST}{alpha.pk}/change/",
        f"{CHANGELIST}{alpha.pk}/statement.csv",
    ]:
        response = client.get(url)
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT])
def test_other_roles_of_the_programme_may_not_open_payouts(client, make_user, payouts, role):
    alpha, _, _ = payouts
    client.force_login(make_user(role, alpha.programme))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(f"{CHANGELIST}export.csv").status_code == 403
    # a payout is outside what they may see: not found, as for another programme's
    assert client.get(f"{CHANGELIST}{alpha.pk}/change/").status_code == 404
    assert client.get(f"{CHANGELIST}{alpha.pk}/statement.csv").status_code == 404


def test_finance_of_another_programme_gets_404(client, make_user, payouts, other_programme):
    alpha, beta, _ = payouts
    client.force_login(make_user(roles.FINANCE, other_programme))
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [beta]
    assert client.get(f"{CHANGELIST}{alpha.pk}/change/").status_code == 404
    assert client.get(f"{CHANGELIST}{alpha.pk}/statement.csv").status_code == 404
    # and an action on a forged selection changes nothing
    client.post(CHANGELIST, {"action": "approve", "_selected_action": [alpha.pk]})
    alpha.refresh_from_db()
    assert alpha.status == "closed"


def test_the_statement_page_lists_the_lines(client, make_user, payouts):
    alpha, _, orders = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    page = client.get(f"{CHANGELIST}{alpha.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    for order in orders:
        assert order.booking_id in content
    assert f"{CHANGELIST}{alpha.pk}/statement.csv" in content
    assert "1000.00" in content and "975.00" in content


def test_finance_approves_then_marks_paid_with_a_reference(client, make_user, payouts):
    # given
    alpha, beta, _ = payouts
    finance = make_user(roles.FINANCE, alpha.programme)
    client.force_login(finance)
    # when
    approved = client.post(
        CHANGELIST, {"action": "approve", "_selected_action": [alpha.pk]}, follow=True
    )
    paid = client.post(
        CHANGELIST,
        {"action": "mark_paid", "_selected_action": [alpha.pk], "reference": "NEFT-42"},
        follow=True,
    )
    # then
    alpha.refresh_from_db()
    assert (alpha.status, alpha.approved_by, alpha.paid_by, alpha.paid_reference) == (
        "paid",
        finance,
        finance,
        "NEFT-42",
    )
    assert texts(approved) == [f"Approved 1 payout(s): #{alpha.pk} =cmd."]
    assert texts(paid) == [f"Marked paid 1 payout(s): #{alpha.pk} =cmd."]
    actions = AuditEvent.objects.filter(object_type="orders.payout", object_id=str(alpha.pk))
    assert sorted(actions.values_list("action", "actor_label")) == [
        ("payout.approve", finance.username),
        ("payout.close", "system"),
        ("payout.mark_paid", finance.username),
    ]
    beta.refresh_from_db()
    assert beta.status == "closed"


def test_marking_a_closed_payout_paid_is_refused_by_name(client, make_user, payouts):
    alpha, _, _ = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    response = client.post(
        CHANGELIST, {"action": "mark_paid", "_selected_action": [alpha.pk]}, follow=True
    )
    alpha.refresh_from_db()
    assert alpha.status == "closed"
    assert texts(response) == [
        f"Could not mark paid 1 payout(s): #{alpha.pk} =cmd (invalid_transition: "
        "A payout cannot go from 'closed' to 'paid'.)."
    ]


def test_the_statement_csv_is_formula_safe_and_adds_up(client, make_user, payouts):
    alpha, _, orders = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    rows = read_csv(client.get(f"{CHANGELIST}{alpha.pk}/statement.csv"))
    header, lines, total = rows[0], rows[1:-1], rows[-1]
    assert header[:2] == ["programme", "merchant"]
    assert {row[1] for row in rows[1:]} == {"'=cmd"}  # text, not a formula
    assert [(row[6], row[7], row[10], row[11], row[12]) for row in lines] == [
        (order.booking_id, "sale", "500.00", "12.50", "487.50") for order in orders
    ]
    assert total[6:] == ["TOTAL", "", "", "", "1000.00", "25.00", "975.00"]
    assert sum(D(row[12]) for row in lines) == alpha.net


def test_the_list_export_follows_the_filters(client, make_user, payouts, programme):
    # given: two payouts of alpha, one approved
    alpha, _, _ = payouts
    other = make_merchant(name="Books")
    sell(merchant_campaign(programme, other))
    _, end = weekly_period()
    payouts_close(period_end=end, now=after(end))  # a late merchant's payout in the same week
    books = Payout.objects.get(merchant=other)
    payout_approve(payout=books, actor=SYSTEM)
    client.force_login(make_user(roles.FINANCE, programme))
    # when
    everything = read_csv(client.get(f"{CHANGELIST}export.csv"))
    approved = read_csv(client.get(f"{CHANGELIST}export.csv?status=approved"))
    by_merchant = read_csv(
        client.get(f"{CHANGELIST}export.csv?merchant__id__exact={alpha.merchant_id}")
    )
    # then
    assert sorted(row[2] for row in everything[1:]) == ["'=cmd", "Books"]
    assert [(row[0], row[2], row[7]) for row in approved[1:]] == [
        (str(books.pk), "Books", "approved")
    ]
    assert [row[0] for row in by_merchant[1:]] == [str(alpha.pk)]


def test_the_list_filters_by_period(client, make_user, payouts):
    alpha, _, _ = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    period = f"{alpha.period_start:%Y-%m-%d}/{alpha.period_end:%Y-%m-%d}"
    page = client.get(CHANGELIST, {"period": period})
    assert list(page.context["cl"].result_list) == [alpha]
    assert (
        list(client.get(CHANGELIST, {"period": "2020-01-06/2020-01-13"}).context["cl"].result_list)
        == []
    )
    assert list(client.get(CHANGELIST, {"period": "garbage"}).context["cl"].result_list) == []


def test_an_unknown_filter_on_the_export_is_a_400_not_a_500(client, make_user, payouts):
    alpha, _, _ = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    assert client.get(f"{CHANGELIST}export.csv?nonsense=1").status_code == 400


def test_payouts_cannot_be_added_edited_or_deleted_in_the_admin(client, make_user, payouts):
    alpha, _, _ = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{alpha.pk}/delete/").status_code == 403
    client.post(f"{CHANGELIST}{alpha.pk}/change/", {"status": "paid", "net": "0"})
    alpha.refresh_from_db()
    assert (alpha.status, alpha.net) == ("closed", D("975.00"))


def test_the_list_costs_the_same_queries_for_more_payouts(client, make_user, payouts, programme):
    client.force_login(make_user(roles.FINANCE, programme))
    client.get(CHANGELIST)  # warm the session and permission caches

    def queries_of_the_list():
        with CaptureQueriesContext(connection) as context:
            assert client.get(CHANGELIST).status_code == 200
        return len(context.captured_queries)

    few = queries_of_the_list()
    for _ in range(6):
        sell(merchant_campaign(programme, make_merchant()))
    _, end = weekly_period()
    payouts_close(period_end=end, now=after(end))
    assert Payout.objects.filter(programme=programme).count() == 7
    assert queries_of_the_list() == few


def test_the_statement_page_shows_the_first_lines_only(client, make_user, payouts, monkeypatch):
    monkeypatch.setattr(payout_admin, "LINES_SHOWN", 1)
    alpha, _, orders = payouts
    client.force_login(make_user(roles.FINANCE, alpha.programme))
    content = client.get(f"{CHANGELIST}{alpha.pk}/change/").content.decode()
    assert orders[0].booking_id in content
    assert orders[1].booking_id not in content
