"""The points and wallet endpoints: the matrix (anonymous, another programme, wrong scope or
role, success), idempotent replays, validation, and the wallet's cursor-paged ledger. Every
refusal changes nothing."""

import pytest
from django.test import Client

from plum import roles
from plum.actors import SYSTEM
from tests.factories import MemberFactory, UserFactory
from wallets.models import LedgerTransaction
from wallets.services import points_burn

pytestmark = pytest.mark.django_db

POINTS_URL = "/api/v1/members/EMP-001/points"
WALLET_URL = "/api/v1/members/EMP-001/wallet"
BODY = {"points": 250, "reference": "HR-42"}


def post_points(api, body=None, key="award-1", url=POINTS_URL):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post(url, body or BODY, format="json", **headers)


SEND = {
    "post": lambda api: post_points(api),
    "get": lambda api: api.get(WALLET_URL),
}


def session_send(client, method):
    if method == "post":
        return client.post(
            POINTS_URL, BODY, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
        )
    return client.get(WALLET_URL)


def receipt(txn, *, points, balance_after, member="EMP-001", programme="alpha"):
    return {
        "transaction": txn.pk,
        "member": member,
        "programme": programme,
        "kind": txn.kind,
        "reason": txn.reason,
        "reference": txn.reference,
        "points": points,
        "balance_after": balance_after,
        "created_at": txn.created_at.isoformat().replace("+00:00", "Z"),
    }


# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "get"])
def test_anonymous_is_401(api, member, ledger_snapshot, method):
    # given
    before = ledger_snapshot()
    # when
    response = SEND[method](api)
    # then
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert ledger_snapshot() == before


@pytest.mark.parametrize("method", ["post", "get"])
def test_another_programmes_client_gets_404(
    make_api, member, other_programme, earn, ledger_snapshot, method
):
    # given
    earn(member, 100)
    api = make_api([other_programme])
    before = ledger_snapshot()
    # when
    response = SEND[method](api)
    # then
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    ("method", "scopes"),
    [
        ("post", ["read"]),
        ("post", ["redeem", "support"]),
        ("get", ["issue", "manage"]),
    ],
)
def test_a_key_without_the_scope_is_403(
    make_api, programme, member, ledger_snapshot, method, scopes
):
    # given
    api = make_api([programme], scopes=scopes)
    before = ledger_snapshot()
    # when
    response = SEND[method](api)
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert ledger_snapshot() == before


@pytest.mark.parametrize("scope", ["issue", "manage"])
def test_a_key_with_issue_or_manage_awards_points(make_api, programme, member, scope):
    # given
    api = make_api([programme], scopes=[scope])
    # when
    response = post_points(api)
    # then
    assert response.status_code == 201
    txn = LedgerTransaction.objects.get()
    assert response.json() == receipt(txn, points=250, balance_after=250)
    assert (txn.kind, txn.reason, txn.reference, txn.actor_label) == (
        "earn",
        "milestone_award",
        "HR-42",
        "api:Test client",
    )
    assert txn.idempotency_key == f"api:c{api.plum_client.pk}:award-1"


def test_the_wallet_shows_balance_and_ledger(make_api, programme, member, earn):
    # given
    earned = earn(member, 500, reference="HR-1")
    burned, _ = points_burn(
        member=member, points=120, reference="ORD-9", idempotency_key="b", actor=SYSTEM
    )
    api = make_api([programme], scopes=["read"])
    # when
    response = api.get(WALLET_URL)
    # then
    assert response.status_code == 200
    postings = {txn.pk: txn.postings.get(account__member=member) for txn in (earned, burned)}
    assert response.json() == {
        "member": "EMP-001",
        "programme": "alpha",
        "balance": 380,
        "next": None,
        "previous": None,
        "ledger": [
            {
                "id": postings[txn.pk].pk,
                "transaction": txn.pk,
                "kind": txn.kind,
                "reason": txn.reason,
                "reference": txn.reference,
                "reverses": None,
                "points": points,
                "balance_after": after,
                "created_at": txn.created_at.isoformat().replace("+00:00", "Z"),
            }
            for txn, points, after in [(burned, -120, 380), (earned, 500, 500)]
        ],
    }


def test_a_member_without_a_wallet_has_an_empty_one(make_api, programme, member):
    # when
    response = make_api([programme], scopes=["read"]).get(WALLET_URL)
    # then
    assert response.status_code == 200
    assert (response.json()["balance"], response.json()["ledger"]) == (0, [])


def test_an_external_id_in_two_programmes_needs_the_programme(
    make_api, programme, other_programme, member, other_member, earn
):
    # given
    earn(other_member, 70)
    api = make_api([programme, other_programme], scopes=["read"])
    # when
    ambiguous = api.get(WALLET_URL)
    named = api.get(f"{WALLET_URL}?programme=beta")
    # then
    assert ambiguous.status_code == 400
    assert ambiguous.json()["error"]["fields"] == {"programme": ["This field is required."]}
    assert (named.json()["programme"], named.json()["balance"]) == ("beta", 70)


def test_a_test_mode_key_cannot_award_points(make_api, programme, member, ledger_snapshot):
    # given
    api = make_api([programme], scopes=["issue", "read"], is_test=True)
    before = ledger_snapshot()
    # when
    response = post_points(api)
    # then
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "points_test_mode_unsupported"
    assert ledger_snapshot() == before
    assert api.get(WALLET_URL).status_code == 200


# --- staff sessions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "status", "transactions"),
    [
        (roles.PROGRAMME_MANAGER, "post", 201, 1),
        (roles.PROGRAMME_MANAGER, "get", 200, 0),
        (roles.SUPPORT_AGENT, "get", 200, 0),
        (roles.FINANCE, "get", 200, 0),
        (roles.SUPPORT_AGENT, "post", 404, 0),
        (roles.FINANCE, "post", 404, 0),
    ],
)
def test_staff_sessions_by_role(make_user, programme, member, role, method, status, transactions):
    # given
    client = Client()
    client.force_login(make_user(role, programme))
    # when
    response = session_send(client, method)
    # then
    assert response.status_code == status
    assert LedgerTransaction.objects.count() == transactions


def test_a_manager_of_another_programme_gets_404(make_user, other_programme, member):
    # given
    client = Client()
    client.force_login(make_user(roles.PROGRAMME_MANAGER, other_programme))
    # when
    response = client.post(
        POINTS_URL, BODY, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    # then
    assert response.status_code == 404
    assert LedgerTransaction.objects.count() == 0


def test_a_signed_in_non_staff_user_is_403(member):
    # given
    client = Client()
    client.force_login(UserFactory())
    # when
    response = client.get(WALLET_URL)
    # then
    assert response.status_code == 403


# --- idempotency and validation --------------------------------------------------------------


def test_the_same_idempotency_key_twice_awards_once(make_api, programme, member):
    # given
    api = make_api([programme], scopes=["issue", "read"])
    first = post_points(api)
    # when
    again = post_points(api)
    # then
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert LedgerTransaction.objects.count() == 1
    assert api.get(WALLET_URL).json()["balance"] == 250


def test_a_session_retry_with_the_same_key_returns_the_first_award(make_user, programme, member):
    # given: sessions have no kernel response store; the ledger key alone makes it one award
    client = Client()
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    send = lambda: client.post(  # noqa: E731
        POINTS_URL, BODY, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    first = send()
    # when
    again = send()
    # then
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert LedgerTransaction.objects.count() == 1


def test_one_key_with_another_body_is_refused(make_api, programme, member):
    # given
    api = make_api([programme], scopes=["issue"])
    post_points(api)
    # when
    response = post_points(api, body={"points": 1, "reference": "HR-42"})
    # then
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert LedgerTransaction.objects.count() == 1


def test_two_clients_may_use_the_same_key(make_api, programme, member):
    # given
    first = make_api([programme], scopes=["issue"], name="HRIS")
    second = make_api([programme], scopes=["issue"], name="CRM")
    # when
    responses = [post_points(first), post_points(second)]
    # then
    assert [r.status_code for r in responses] == [201, 201]
    assert LedgerTransaction.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "key", "fields"),
    [
        ({"points": 0, "reference": "R"}, "k", ["points"]),
        ({"points": -5, "reference": "R"}, "k", ["points"]),
        ({"points": "many", "reference": "R"}, "k", ["points"]),
        ({"points": 5}, "k", ["reference"]),
        ({"points": 5, "reference": "R", "reason": "redemption"}, "k", ["reason"]),
        ({"points": 5, "reference": "R", "balance": 9}, "k", ["balance"]),
        (BODY, None, ["Idempotency-Key"]),
    ],
)
def test_invalid_requests_are_400_and_post_nothing(
    make_api, programme, member, ledger_snapshot, body, key, fields
):
    # given
    api = make_api([programme], scopes=["issue"])
    before = ledger_snapshot()
    # when
    response = post_points(api, body=body, key=key)
    # then
    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == fields
    assert ledger_snapshot() == before


def test_an_overlong_key_is_refused(make_api, programme, member):
    # when
    response = post_points(make_api([programme], scopes=["issue"]), key="k" * 201)
    # then
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert LedgerTransaction.objects.count() == 0


# --- the ledger's pages ----------------------------------------------------------------------


def test_the_ledger_pages_with_a_cursor_newest_first(
    make_api, programme, member, earn, django_assert_num_queries
):
    # given
    for points in range(1, 8):
        earn(member, points)
    api = make_api([programme], scopes=["read"])
    url = f"{WALLET_URL}?page_size=3"
    seen = []
    # when
    while url:
        page = api.get(url).json()
        seen += [entry["points"] for entry in page["ledger"]]
        url = page["next"]
    # then
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_a_ledger_page_costs_the_same_queries_however_long_the_ledger(
    make_api, programme, member, earn, django_assert_num_queries
):
    # given
    for points in range(1, 30):
        earn(member, points)
    api = make_api([programme], scopes=["read"])
    api.get(WALLET_URL)  # the key's first use stamps last_used_at: not part of a page's cost
    # when / then: the key, the member, the wallet, postings with their transactions
    with django_assert_num_queries(4):
        response = api.get(f"{WALLET_URL}?page_size=20")
    assert len(response.json()["ledger"]) == 20


def test_a_member_of_another_programme_with_the_same_id_is_not_mixed_in(
    make_api, programme, member, other_programme, earn
):
    # given
    twin = MemberFactory(programme=other_programme, external_id="EMP-001")
    earn(twin, 999)
    earn(member, 1)
    # when
    response = make_api([programme], scopes=["read"]).get(WALLET_URL)
    # then
    assert (response.json()["balance"], len(response.json()["ledger"])) == (1, 1)
