"""The ledger admin: read-only lists scoped to the user's programmes; another programme's rows
are 404, and nothing can be added, changed or deleted there."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Programme
from tests.factories import MemberFactory
from wallets.models import Account, LedgerTransaction, PointsPolicy
from wallets.services import transaction_reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def books(member, other_member, earn):
    """Earns in both programmes: alpha's member 100, beta's member 200."""
    return {"alpha": earn(member, 100), "beta": earn(other_member, 200)}


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
@pytest.mark.parametrize(
    ("model", "rows"),
    [("account", 2), ("ledgertransaction", 1)],
)
def test_staff_see_their_programmes_ledger_only(
    client, make_user, programme, books, role, model, rows
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(reverse(f"admin:wallets_{model}_changelist"))
    # then
    assert response.status_code == 200
    assert response.context["cl"].result_count == rows
    assert {obj.programme_id for obj in response.context["cl"].result_list} == {programme.pk}


@pytest.mark.parametrize(
    ("model", "cls"), [("account", Account), ("ledgertransaction", LedgerTransaction)]
)
def test_another_programmes_row_is_404(client, make_user, programme, books, model, cls):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    other = cls.objects.filter(programme__slug="beta").first()
    # when
    response = client.get(reverse(f"admin:wallets_{model}_change", args=[other.pk]))
    # then
    assert response.status_code == 404


def test_a_transaction_page_shows_its_postings_read_only(client, make_user, programme, books):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    txn = books["alpha"]
    # when
    response = client.get(reverse("admin:wallets_ledgertransaction_change", args=[txn.pk]))
    # then
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert b'name="_save"' not in response.content
    assert response.context["inline_admin_formsets"][0].formset.queryset.count() == 2


@pytest.mark.parametrize(
    ("method", "url", "target"),
    [
        ("get", "admin:wallets_account_add", None),
        ("get", "admin:wallets_ledgertransaction_add", None),
        ("post", "admin:wallets_ledgertransaction_change", "transaction"),
        ("post", "admin:wallets_ledgertransaction_delete", "transaction"),
        ("post", "admin:wallets_account_change", "account"),
        ("post", "admin:wallets_account_delete", "account"),
    ],
)
def test_nothing_can_be_written_from_the_admin(
    client, make_user, programme, member, books, ledger_snapshot, method, url, target
):
    # given: even a platform admin
    client.force_login(make_user(roles.PLATFORM_ADMIN))
    targets = {
        None: [],
        "transaction": [books["alpha"].pk],
        "account": [Account.objects.get(member=member).pk],
    }
    before = ledger_snapshot()
    # when
    response = getattr(client, method)(
        reverse(url, args=targets[target]), {"reference": "forged", "post": "yes"}
    )
    # then
    assert response.status_code == 403
    assert ledger_snapshot() == before


# --- manual adjustments ----------------------------------------------------------------------

TOKEN = "6f1c2a52-3d4b-4c61-9a51-0d6c2b1e9f00"


def adjust_url(account):
    return reverse("admin:wallets_account_adjust", args=[account.pk])


@pytest.fixture
def manager_client(client, make_user, programme):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme, username="pm-alpha"))
    return client


def test_a_manager_adjusts_a_wallet_with_a_note(manager_client, member, books):
    # given
    wallet = Account.objects.get(member=member)
    form = manager_client.get(adjust_url(wallet))
    # when
    response = manager_client.post(
        adjust_url(wallet),
        {"points": "-30", "note": "duplicate award", "reference": "TCK-9", "token": TOKEN},
    )
    # then
    assert form.status_code == 200
    assert response.status_code == 302
    wallet.refresh_from_db()
    assert wallet.balance == 70
    txn = LedgerTransaction.objects.get(kind="adjustment")
    assert (txn.note, txn.reference, txn.actor_label, txn.idempotency_key) == (
        "duplicate award",
        "TCK-9",
        "pm-alpha",
        f"admin:{TOKEN}",
    )


def test_submitting_the_same_form_twice_adjusts_once(manager_client, member, books):
    # given
    wallet = Account.objects.get(member=member)
    data = {"points": "25", "note": "goodwill", "token": TOKEN}
    # when
    responses = [manager_client.post(adjust_url(wallet), data) for _ in range(2)]
    # then
    assert [r.status_code for r in responses] == [302, 302]
    assert LedgerTransaction.objects.filter(kind="adjustment").count() == 1
    wallet.refresh_from_db()
    assert wallet.balance == 125


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"points": "5", "note": ""}, "This field is required."),
        ({"points": "0", "note": "x"}, "Give a non-zero number of points."),
        ({"points": "-101", "note": "too much"}, "The wallet does not hold enough points."),
    ],
)
def test_a_refused_adjustment_shows_why_and_changes_nothing(
    manager_client, member, books, ledger_snapshot, data, error
):
    # given
    wallet = Account.objects.get(member=member)
    before = ledger_snapshot()
    # when
    response = manager_client.post(adjust_url(wallet), {**data, "token": TOKEN})
    # then
    assert response.status_code == 200
    assert error in response.content.decode()
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    ("role", "slug", "status"),
    [
        (roles.SUPPORT_AGENT, "alpha", 403),
        (roles.FINANCE, "alpha", 403),
        (roles.PROGRAMME_MANAGER, "beta", 404),
    ],
)
def test_only_the_programmes_managers_may_adjust(
    client, make_user, member, books, ledger_snapshot, role, slug, status
):
    # given
    client.force_login(make_user(role, Programme.objects.get(slug=slug)))
    wallet = Account.objects.get(member=member)
    before = ledger_snapshot()
    # when
    response = client.post(adjust_url(wallet), {"points": "5", "note": "x", "token": TOKEN})
    # then
    assert response.status_code == status
    assert ledger_snapshot() == before


def test_a_counter_account_cannot_be_adjusted(manager_client, programme, books):
    # given
    funding = Account.objects.get(programme=programme, kind="funding")
    # when
    response = manager_client.get(adjust_url(funding))
    # then
    assert response.status_code == 403


# --- the points policy -----------------------------------------------------------------------


def test_a_manager_sets_the_expiry_policy_through_the_service(manager_client, programme):
    # when
    response = manager_client.post(
        reverse("admin:wallets_pointspolicy_add"),
        {"programme": programme.pk, "expiry_months": "12"},
    )
    # then
    assert response.status_code == 302
    policy = PointsPolicy.objects.get()
    assert (policy.programme_id, policy.expiry_months) == (programme.pk, 12)
    event = AuditEvent.objects.get(action="points_policy.update")
    assert (event.actor_label, event.changes) == ("pm-alpha", {"expiry_months": [None, 12]})


def test_a_manager_cannot_set_another_programmes_policy(manager_client, other_programme):
    # when
    response = manager_client.post(
        reverse("admin:wallets_pointspolicy_add"),
        {"programme": other_programme.pk, "expiry_months": "12"},
    )
    # then
    assert response.status_code == 200
    assert "programme" in response.context["adminform"].form.errors
    assert PointsPolicy.objects.count() == 0


@pytest.mark.parametrize("months", ["0", "121"])
def test_an_out_of_range_expiry_is_refused(manager_client, programme, months):
    # when
    response = manager_client.post(
        reverse("admin:wallets_pointspolicy_add"),
        {"programme": programme.pk, "expiry_months": months},
    )
    # then
    assert response.status_code == 200
    assert PointsPolicy.objects.count() == 0


def test_support_agents_cannot_set_the_policy(client, make_user, programme):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(reverse("admin:wallets_pointspolicy_add"))
    # then
    assert response.status_code == 403


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("model", ["account", "ledgertransaction"])
def test_a_list_costs_the_same_queries_however_many_rows(client, make_user, programme, earn, model):
    # given: wallets with an earn each, one of them reversed
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    url = reverse(f"admin:wallets_{model}_changelist")
    txns = [earn(MemberFactory(programme=programme), 10) for _ in range(2)]
    transaction_reverse(transaction=txns[0], actor=SYSTEM)
    _queries(client, url)  # warm the session and permission caches
    few = _queries(client, url)
    # when
    for _ in range(28):
        transaction_reverse(transaction=earn(MemberFactory(programme=programme), 10), actor=SYSTEM)
    many = _queries(client, url)
    # then
    assert many == few
