import threading
from decimal import Decimal

import pytest
from django.db import connection
from rest_framework.test import APIClient

from campaigns.models import Voucher
from campaigns.services.campaigns import campaign_transition
from campaigns.services.vouchers import voucher_redeem
from orders.models import Order
from orders.services import order_cancel, order_issue
from plum import roles
from plum.actors import SYSTEM
from tests.factories import MemberFactory

D = Decimal
pytestmark = pytest.mark.django_db

ORDER_KEYS = {
    "booking_id",
    "status",
    "approval_state",
    "programme",
    "campaign",
    "member",
    "value",
    "currency",
    "source",
    "delivery_status",
    "reference",
    "is_test",
    "points",
    "voucher",
    "created_at",
    "approved_at",
    "completed_at",
    "cancelled_at",
}


def body(campaign, external_id="EMP-001", **extra):
    return {
        "campaign": campaign.pk,
        "recipient": {
            "external_id": external_id,
            "name": "Asha Rao",
            "email": "asha@example.com",
            "phone": "+919800000001",
            "country": "IN",
        },
        "reference": "crm-42",
        **extra,
    }


def issue(campaign, member, **kwargs):
    return order_issue(campaign=campaign, member=member, source="api", actor=SYSTEM, **kwargs)


# --- issuance --------------------------------------------------------------------------------


def test_issue_answers_201_with_the_order_and_its_voucher(client_api, campaign, programme):
    # when
    response = client_api.post("/api/v1/issuances", body(campaign), format="json")
    # then
    assert response.status_code == 201, response.json()
    data = response.json()
    order = Order.objects.get()
    voucher = Voucher.objects.get()
    assert set(data) == ORDER_KEYS
    assert data["booking_id"] == order.booking_id
    assert (data["status"], data["approval_state"], data["source"]) == (
        "completed",
        "not_required",
        "api",
    )
    assert (data["programme"], data["campaign"], data["member"]) == (
        "alpha",
        campaign.pk,
        "EMP-001",
    )
    assert (data["value"], data["currency"], data["reference"], data["is_test"]) == (
        "500.00",
        "INR",
        "crm-42",
        False,
    )
    assert data["voucher"]["code"] == voucher.code
    assert data["voucher"]["status"] == "active"
    assert data["voucher"]["expires_at"] is not None
    assert order.member.email == "asha@example.com"
    campaign.refresh_from_db()
    assert campaign.issued_count == 1


def test_a_held_campaign_answers_202_pending(client_api, programme, make_campaign):
    campaign = make_campaign(programme, approval_mode="manual")
    response = client_api.post("/api/v1/issuances/", body(campaign), format="json")
    assert response.status_code == 202
    data = response.json()
    assert (data["status"], data["approval_state"], data["voucher"]) == (
        "pending",
        "pending",
        None,
    )


def test_a_variable_value(client_api, campaign):
    response = client_api.post("/api/v1/issuances", body(campaign, value="1000.00"), format="json")
    assert response.status_code == 201
    assert response.json()["value"] == "1000.00"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"max_rewards": 0}, "campaign_exhausted"),
        ({"budget": D("100.00")}, "budget_exhausted"),
        ({"per_member_cap": 0}, "member_cap_reached"),
        ({"code_source": "pool"}, "pool_exhausted"),
        ({"active": False}, "campaign_not_active"),
    ],
)
def test_refusals_are_409_with_their_code_and_change_nothing(
    client_api, programme, make_campaign, snapshot, fields, code
):
    campaign = make_campaign(programme, **fields)
    before = snapshot()
    response = client_api.post("/api/v1/issuances", body(campaign), format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == code
    assert snapshot() == before


def test_an_invalid_recipient_is_422(client_api, campaign, snapshot):
    before = snapshot()
    data = body(campaign)
    data["recipient"]["phone"] = "12345"
    response = client_api.post("/api/v1/issuances", data, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], list(error["fields"])) == ("invalid_recipient", ["recipient.phone"])
    assert snapshot() == before


@pytest.mark.parametrize(
    "data",
    [
        {"recipient": {"external_id": "X"}},
        {"campaign": 1, "recipient": {"external_id": "X"}, "colour": "red"},
        {"campaign": 1, "recipient": {"external_id": "X", "shoe_size": 9}},
        {"campaign": 1, "recipient": {}},
    ],
)
def test_malformed_requests_are_400(client_api, campaign, data):
    response = client_api.post("/api/v1/issuances", data, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_a_test_key_makes_test_orders_touching_no_live_counter(make_api, programme, make_campaign):
    campaign = make_campaign(programme, max_rewards=1)
    api = make_api([programme], is_test=True)
    first = api.post("/api/v1/issuances", body(campaign), format="json")
    second = api.post("/api/v1/issuances", body(campaign, "EMP-002"), format="json")
    assert [first.status_code, second.status_code] == [201, 201]
    assert [first.json()["is_test"], second.json()["is_test"]] == [True, True]
    assert list(Voucher.objects.values_list("is_test", flat=True)) == [True, True]
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (0, D("0"))


def test_test_and_live_keys_see_only_their_own_orders(make_api, programme, campaign, member):
    live = issue(campaign, member)
    test = issue(campaign, member, is_test=True)
    live_api, test_api = make_api([programme]), make_api([programme], is_test=True)
    assert [o["booking_id"] for o in live_api.get("/api/v1/orders").json()["results"]] == [
        live.booking_id
    ]
    assert [o["booking_id"] for o in test_api.get("/api/v1/orders").json()["results"]] == [
        test.booking_id
    ]
    assert test_api.get(f"/api/v1/orders/{live.booking_id}").status_code == 404
    assert test_api.post(f"/api/v1/orders/{live.booking_id}/cancel").status_code == 404


def test_an_idempotency_key_replays_the_first_response(client_api, campaign):
    headers = {"HTTP_IDEMPOTENCY_KEY": "hris-cycle-7"}
    first = client_api.post("/api/v1/issuances", body(campaign), format="json", **headers)
    again = client_api.post("/api/v1/issuances", body(campaign), format="json", **headers)
    other = client_api.post(
        "/api/v1/issuances", body(campaign, "EMP-002"), format="json", **headers
    )
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


# --- list and detail -------------------------------------------------------------------------


def test_list_filters(client_api, programme, make_campaign, member):
    # given
    campaign = make_campaign(programme)
    held = make_campaign(programme, approval_mode="manual", name="Held")
    done = issue(campaign, member)
    pending = issue(held, MemberFactory(programme=programme, external_id="EMP-777"))
    admin_made = order_issue(campaign=campaign, member=member, source="admin", actor=SYSTEM)

    def booking_ids(query):
        response = client_api.get(f"/api/v1/orders?{query}")
        assert response.status_code == 200, response.json()
        return [o["booking_id"] for o in response.json()["results"]]

    # then
    assert booking_ids("") == [admin_made.booking_id, pending.booking_id, done.booking_id]
    assert booking_ids("status=pending") == [pending.booking_id]
    assert booking_ids("approval_state=pending") == [pending.booking_id]
    assert booking_ids(f"campaign={campaign.pk}") == [admin_made.booking_id, done.booking_id]
    assert booking_ids("source=admin") == [admin_made.booking_id]
    assert booking_ids("member=EMP-777") == [pending.booking_id]
    assert booking_ids("delivery_status=delivered") == []
    assert (
        booking_ids("created_after=2000-01-01T00:00:00Z&created_before=2001-01-01T00:00:00Z") == []
    )
    assert len(booking_ids("created_after=2000-01-01T00:00:00Z")) == 3
    assert client_api.get("/api/v1/orders?status=lost").status_code == 400


def test_list_is_paginated_by_cursor(client_api, campaign, programme):
    for _ in range(3):
        issue(campaign, MemberFactory(programme=programme))
    first = client_api.get("/api/v1/orders?page_size=2").json()
    assert len(first["results"]) == 2
    second = client_api.get(first["next"]).json()
    assert len(second["results"]) == 1


@pytest.mark.parametrize("count", [1, 20])
def test_list_costs_the_same_queries_for_any_number_of_orders(
    client_api, programme, make_campaign, django_assert_num_queries, count
):
    campaign = make_campaign(programme, max_rewards=100)
    for _ in range(count):
        issue(campaign, MemberFactory(programme=programme))
    client_api.get("/api/v1/orders")  # the first request of a key also records its last use
    # the key, one page of orders with their relations (scoped by a subquery)
    with django_assert_num_queries(2):
        response = client_api.get("/api/v1/orders")
    assert len(response.json()["results"]) == count


def test_detail_by_booking_id(client_api, campaign, member):
    order = issue(campaign, member)
    response = client_api.get(f"/api/v1/orders/{order.booking_id.lower()}/")
    assert response.status_code == 200
    assert response.json()["booking_id"] == order.booking_id
    assert response.json()["voucher"]["code"] == order.voucher.code
    missing = client_api.get("/api/v1/orders/PLM-AAAA-AAAA")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "order_not_found")


# --- actions ---------------------------------------------------------------------------------


def test_cancel_releases_the_reward(client_api, campaign, member):
    order = issue(campaign, member)
    response = client_api.post(
        f"/api/v1/orders/{order.booking_id}/cancel", {"reason": "left company"}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["voucher"]["status"]) == (
        "cancelled",
        "cancelled",
    )
    campaign.refresh_from_db()
    assert campaign.issued_count == 0
    again = client_api.post(f"/api/v1/orders/{order.booking_id}/cancel")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "invalid_transition")


def test_approve_and_reject(client_api, programme, make_campaign, member):
    campaign = make_campaign(programme, approval_mode="manual", max_rewards=1)
    first = issue(campaign, member)
    second = issue(campaign, MemberFactory(programme=programme))
    third = issue(campaign, MemberFactory(programme=programme))
    approved = client_api.post(f"/api/v1/orders/{first.booking_id}/approve")
    refused = client_api.post(f"/api/v1/orders/{second.booking_id}/approve")
    rejected = client_api.post(f"/api/v1/orders/{third.booking_id}/reject", {}, format="json")
    assert approved.status_code == 200
    assert (approved.json()["status"], approved.json()["approval_state"]) == (
        "completed",
        "approved",
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "campaign_exhausted")
    assert (rejected.json()["status"], rejected.json()["approval_state"]) == (
        "cancelled",
        "rejected",
    )
    second.refresh_from_db()
    assert (second.status, second.approval_state) == ("pending", "pending")


def test_cancel_after_redemption_is_refused(client_api, campaign, member):
    order = issue(campaign, member)
    voucher_redeem(voucher=order.voucher, amount=D("1.00"), reference="pos", actor=SYSTEM)
    response = client_api.post(f"/api/v1/orders/{order.booking_id}/cancel")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "order_voucher_used")


# --- the permission matrix -------------------------------------------------------------------


@pytest.fixture
def matrix(programme, other_programme, make_campaign, make_api):
    """Every endpoint with: an order and campaign of `programme` (ours), the same of
    `other_programme`, and for each endpoint the scope it needs."""
    ours = make_campaign(programme, approval_mode="manual")
    theirs = make_campaign(other_programme, approval_mode="manual", name="Beta")
    our_order = issue(ours, MemberFactory(programme=programme))
    their_order = issue(theirs, MemberFactory(programme=other_programme))
    return {"ours": (ours, our_order), "theirs": (theirs, their_order)}


# (method, path, the scope it needs, the status a principal holding that scope gets)
ENDPOINTS = [
    ("post", "/api/v1/issuances", "issue", 202),
    ("get", "/api/v1/orders", "read", 200),
    ("get", "/api/v1/orders/counts", "read", 200),
    ("get", "/api/v1/orders/{booking_id}", "read", 200),
    ("post", "/api/v1/orders/{booking_id}/approve", "manage", 200),
    ("post", "/api/v1/orders/{booking_id}/reject", "manage", 200),
    ("post", "/api/v1/orders/{booking_id}/cancel", "manage", 200),
]
LISTS = ("/api/v1/orders", "/api/v1/orders/counts")


def call(api, method, path, campaign, order):
    url = path.format(booking_id=order.booking_id)
    if method == "get":
        return api.get(url)
    data = body(campaign, "EMP-NEW") if url.endswith("issuances") else {}
    return api.post(url, data, format="json")


@pytest.mark.parametrize(("method", "path", "scope", "expected"), ENDPOINTS)
def test_anonymous_is_401(matrix, method, path, scope, expected):
    response = call(APIClient(), method, path, *matrix["ours"])
    assert (response.status_code, response.json()["error"]["code"]) == (401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "scope", "expected"), ENDPOINTS)
def test_wrong_scope_is_403(matrix, make_api, programme, method, path, scope, expected):
    others = [s for s in ("read", "issue", "redeem", "manage", "support") if s != scope]
    response = call(make_api([programme], scopes=others), method, path, *matrix["ours"])
    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")


@pytest.mark.parametrize(
    ("method", "path", "scope", "expected"), [e for e in ENDPOINTS if e[1] not in LISTS]
)
def test_another_programme_is_404(
    matrix, make_api, programme, snapshot, method, path, scope, expected
):
    api = make_api([programme], scopes=[scope])
    before = snapshot()
    response = call(api, method, path, *matrix["theirs"])
    assert response.status_code == 404
    assert snapshot() == before


def test_another_programme_s_orders_are_not_listed(matrix, make_api, programme):
    _, ours = matrix["ours"]
    response = make_api([programme], scopes=["read"]).get("/api/v1/orders")
    assert [o["booking_id"] for o in response.json()["results"]] == [ours.booking_id]


@pytest.mark.parametrize(("method", "path", "scope", "expected"), ENDPOINTS)
def test_the_right_scope_succeeds(matrix, make_api, programme, method, path, scope, expected):
    api = make_api([programme], scopes=[scope])
    response = call(api, method, path, *matrix["ours"])
    assert response.status_code == expected, response.json()


@pytest.mark.parametrize(
    ("role", "detail", "cancel"),
    [
        (roles.PROGRAMME_MANAGER, 200, 200),
        (roles.SUPPORT_AGENT, 200, 404),
        (roles.FINANCE, 200, 404),
    ],
)
def test_staff_sessions_by_role(matrix, make_user, programme, role, detail, cancel):
    _, order = matrix["ours"]
    _, theirs = matrix["theirs"]
    api = APIClient()
    api.force_login(make_user(role, programme))
    assert api.get(f"/api/v1/orders/{order.booking_id}").status_code == detail
    assert api.get(f"/api/v1/orders/{theirs.booking_id}").status_code == 404
    assert api.post(f"/api/v1/orders/{order.booking_id}/cancel").status_code == cancel


# --- concurrency (Postgres) ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_20_parallel_requests_with_one_idempotency_key_make_one_order(
    programme, make_campaign, make_api_client
):
    # given
    campaign = make_campaign(programme)
    _, key = make_api_client([programme])
    barrier = threading.Barrier(20)
    responses = [None] * 20

    def post(index):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        try:
            barrier.wait(timeout=30)
            responses[index] = api.post(
                "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="once"
            )
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then
    statuses = sorted(r.status_code for r in responses)
    created = [r for r in responses if r.status_code == 201]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_use) == 20, statuses
    assert {r.json()["error"]["code"] for r in in_use} <= {"idempotency_key_in_use"}
    assert len({r.json()["booking_id"] for r in created}) == 1
    assert Order.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.issued_count == 1


def test_a_paused_campaign_refuses_over_the_api(client_api, campaign):
    campaign_transition(campaign=campaign, action="pause", actor=SYSTEM)
    response = client_api.post("/api/v1/issuances", body(campaign), format="json")
    assert response.json()["error"]["code"] == "campaign_not_active"


def test_counts_by_status_per_campaign(
    client_api, programme, other_programme, make_campaign, member, django_assert_num_queries
):
    # given
    campaign = make_campaign(programme)
    held = make_campaign(programme, approval_mode="manual", name="Held")
    issue(campaign, member)
    cancelled = issue(campaign, member)
    order_cancel(order=cancelled, actor=SYSTEM)
    issue(held, member)
    issue(campaign, member, is_test=True)  # a live key does not count test orders
    issue(make_campaign(other_programme, name="Beta"), MemberFactory(programme=other_programme))
    client_api.get("/api/v1/orders/counts")
    # when
    with django_assert_num_queries(2):
        response = client_api.get("/api/v1/orders/counts/")
    # then
    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "campaign": campaign.pk,
            "pending": 0,
            "awaiting_approval": 0,
            "completed": 1,
            "cancelled": 1,
            "total": 2,
        },
        {
            "campaign": held.pk,
            "pending": 1,
            "awaiting_approval": 1,
            "completed": 0,
            "cancelled": 0,
            "total": 1,
        },
    ]
    only_held = client_api.get(f"/api/v1/orders/counts?campaign={held.pk}").json()["results"]
    assert [row["campaign"] for row in only_held] == [held.pk]


def _statement(sql: str) -> str:
    """'INSERT orders_order', 'SELECT plum_member', 'SAVEPOINT', ...: a statement's verb and
    first table, enough to see which part of the request a statement belongs to."""
    words = sql.replace('"', "").split()
    verb = words[0].upper()
    if verb == "WITH":  # several writes in one statement (plum.sql.deferred_writes)
        parts = sql.replace('"', "").split(" AS (")[1:]
        return "WITH " + ", ".join(_statement(part) for part in parts)
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb
    keyword = {"INSERT": "INTO", "UPDATE": "UPDATE", "SELECT": "FROM", "DELETE": "FROM"}[verb]
    table = words[words.index(keyword) + 1] if keyword in words else "-"
    return f"{verb} {table.split('.')[0]}"


# Pinned: a change that adds a statement to the single issuance path fails here (and must say
# why in docs/performance.md). Inside the test's transaction the durable block is a savepoint.
SINGLE_ISSUANCE_STATEMENTS = [
    "SELECT plum_apiclient",  # the key
    "INSERT plum_idempotencykey",  # the claim: one INSERT ... ON CONFLICT DO NOTHING
    "SELECT campaigns_campaign",  # the campaign, scoped to the key's programmes
    "SAVEPOINT",  # order_issue_to_recipient's transaction
    # member_upsert without a savepoint of its own: any refusal fails the whole transaction
    "SELECT plum_member",  # FOR UPDATE
    "INSERT plum_member",  # ON CONFLICT (programme, external_id) DO NOTHING
    # the conditional counter UPDATE and, in the same statement, a pooled code (SKIP LOCKED)
    "WITH UPDATE campaigns_campaign, SELECT campaigns_voucher",
    "INSERT campaigns_voucher",  # a generated code, ON CONFLICT (code) DO NOTHING
    "INSERT orders_order",  # ON CONFLICT (booking_id) DO NOTHING
    "INSERT orders_delivery",
    # One statement at the end (deferred_writes): order.created, order.completed and the
    # delivery's message (outbox_batch); member.create, voucher.issue, order.create and
    # delivery.queue (audit_batch); the stored response, in the issuing transaction.
    "WITH INSERT plum_outboxmessage, INSERT plum_auditevent, UPDATE plum_idempotencykey",
    "RELEASE",
]


def test_a_single_issuance_costs_a_pinned_list_of_statements(client_api, campaign):
    from django.test.utils import CaptureQueriesContext

    client_api.get("/api/v1/orders")  # the first request of a key also records its last use
    with CaptureQueriesContext(connection) as queries:
        response = client_api.post(
            "/api/v1/issuances",
            body(campaign, external_id="EMP-900"),
            format="json",
            HTTP_IDEMPOTENCY_KEY="pinned-1",
        )
    assert response.status_code == 201, response.json()
    statements = [_statement(q["sql"]) for q in queries.captured_queries]
    assert statements == SINGLE_ISSUANCE_STATEMENTS
    order = Order.objects.get(booking_id=response.json()["booking_id"])
    assert response.json()["voucher"]["code"] == order.voucher.code
    assert response.json()["delivery_status"] == order.delivery_status == "pending"
    assert response.json()["member"] == "EMP-900"
    assert response.json()["programme"] == campaign.programme.slug


@pytest.mark.django_db(transaction=True)
def test_the_stored_response_commits_with_the_order(client_api, campaign, monkeypatch):
    # given: the response may be stored inside a transaction, never after the issuing
    # transaction has committed (as if the process died right after that commit)
    from plum.api import base

    store = base.idempotency_complete

    def store_or_crash(**kwargs):
        if not connection.in_atomic_block:
            raise RuntimeError("the process died after the issuing commit")
        store(**kwargs)

    monkeypatch.setattr(base, "idempotency_complete", store_or_crash)
    # when: the issuance, then its retry with the same key
    first = client_api.post(
        "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="commit-1"
    )
    retry = client_api.post(
        "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="commit-1"
    )
    # then: the response was stored by the issuing transaction itself: the retry replays it
    assert first.status_code == 201
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert Order.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_failure_after_the_response_is_stored_rolls_both_back_and_frees_the_key(
    client_api, campaign, monkeypatch
):
    # given: the issuing transaction fails after the response was stored in it
    from plum.api import base

    store = base.idempotency_complete

    def store_then_fail(**kwargs):
        store(**kwargs)
        raise RuntimeError("the commit failed")

    monkeypatch.setattr(base, "idempotency_complete", store_then_fail)
    client_api.raise_request_exception = False
    # when
    failed = client_api.post(
        "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="fail-1"
    )
    monkeypatch.setattr(base, "idempotency_complete", store)
    retry = client_api.post(
        "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="fail-1"
    )
    # then: nothing of the first survived, and the key was free for the retry
    assert failed.status_code == 500
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    assert Order.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.issued_count == 1


def test_the_order_renderer_gives_what_the_order_serializer_gives(programme, make_campaign, member):
    # given: orders in every shape: completed, held, cancelled, test, variable value
    from orders.api.orders import OrderOutput, OrderRenderer

    live = make_campaign(programme)
    held = make_campaign(programme, approval_mode="manual")
    completed = issue(live, member)
    pending = issue(held, MemberFactory(programme=programme))
    cancelled = order_cancel(order=issue(live, MemberFactory(programme=programme)), actor=SYSTEM)
    test_order = issue(live, MemberFactory(programme=programme), is_test=True)
    fresh = [completed, pending, test_order]
    read = list(
        Order.objects.select_related("programme", "campaign", "member", "voucher").order_by("pk")
    )
    renderer = OrderRenderer()
    # when / then: the same JSON for rows just written and rows read back
    for order in [*fresh, cancelled, *read]:
        assert renderer.render(order) == OrderOutput(order).data
    assert {o.status for o in read} == {"completed", "pending", "cancelled"}


@pytest.mark.django_db(transaction=True)
def test_a_single_issuance_publishes_one_task_naming_all_its_messages(
    client_api, campaign, monkeypatch
):
    # given: what the on-commit publishes send to the broker, recorded
    from plum import tasks
    from plum.models import OutboxMessage

    published = []
    monkeypatch.setattr(tasks.outbox_deliver_task, "apply_async", lambda **kw: published.append(kw))
    monkeypatch.setattr(
        tasks.outbox_sweep_task, "apply_async", lambda **kw: published.append(("sweep", kw))
    )
    before = set(OutboxMessage.objects.values_list("pk", flat=True))  # the campaign's events
    # when
    response = client_api.post(
        "/api/v1/issuances", body(campaign), format="json", HTTP_IDEMPOTENCY_KEY="one-publish"
    )
    # then: one task names the order's two events and its delivery's message, and nothing else
    assert response.status_code == 201, response.json()
    assert len(published) == 1, published
    written = set(OutboxMessage.objects.values_list("pk", flat=True)) - before
    assert sorted(published[0]["args"]) == sorted(str(pk) for pk in written)
    assert len(written) == 3
    assert OutboxMessage.objects.filter(kind="delivery").count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_issuance_refused_by_the_per_member_cap_publishes_nothing_and_leaves_nothing(
    client_api, campaign, monkeypatch
):
    # given: a cap of one reward per member, already taken by the member
    from plum import tasks
    from plum.models import AuditEvent, Member, OutboxMessage

    campaign.per_member_cap = 1
    campaign.save(update_fields=["per_member_cap"])
    first = client_api.post("/api/v1/issuances", body(campaign), format="json")
    assert first.status_code == 201, first.json()
    published = []
    monkeypatch.setattr(tasks.outbox_deliver_task, "apply_async", lambda **kw: published.append(kw))
    counts = (Order.objects.count(), OutboxMessage.objects.count(), AuditEvent.objects.count())
    # when: the same member again, with new contact details
    again = body(campaign)
    again["recipient"]["name"] = "Asha R."
    second = client_api.post("/api/v1/issuances", again, format="json")
    # then: refused, nothing written (not even the member's update) and nothing published
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "member_cap_reached"
    assert published == []
    after = (Order.objects.count(), OutboxMessage.objects.count(), AuditEvent.objects.count())
    assert after == counts
    assert Member.objects.get(external_id="EMP-001").name == "Asha Rao"
