"""The tickets API: the permission matrix (anonymous, a key without the scope, a key of
programme B → 404, a member's session, a test key; a key and an agent session of A → in),
filters, create with an Idempotency-Key, transition and messages, and refusals with their
specific codes that change nothing."""

import pytest
from rest_framework.test import APIClient

from plum.models import AuditEvent, OutboxMessage
from support.models import Ticket, TicketMessage
from support.services import ticket_assign, tickets_sla_sweep
from tests.support.conftest import at, open_ticket

pytestmark = pytest.mark.django_db

LIST = "/api/v1/tickets"


def keyed(make_api_client, programmes, scopes=None, is_test=False):
    _, key = make_api_client(programmes, scopes=scopes, is_test=is_test)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def session(user):
    api = APIClient()
    api.force_login(user)
    return api


@pytest.fixture
def key_a(make_api_client, programme):
    return keyed(make_api_client, [programme], scopes=["read", "support"])


@pytest.fixture
def key_b(make_api_client, other_programme):
    return keyed(make_api_client, [other_programme], scopes=["read", "support"])


def state():
    return {
        "tickets": list(Ticket.objects.order_by("pk").values()),
        "messages": TicketMessage.objects.count(),
        "audit": AuditEvent.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


ENDPOINTS = {
    "list": ("get", lambda t: LIST, None),
    "detail": ("get", lambda t: f"{LIST}/{t.pk}", None),
    "create": (
        "post",
        lambda t: LIST,
        {"member": "EMP-001", "category": "other", "description": "Called us."},
    ),
    "transition": ("post", lambda t: f"{LIST}/{t.pk}/transition", {"status": "in_progress"}),
    "messages": ("post", lambda t: f"{LIST}/{t.pk}/messages", {"kind": "note", "body": "Hi"}),
}


def call(api, name, ticket, slash=False):
    method, url, data = ENDPOINTS[name]
    path = url(ticket) + ("/" if slash else "")
    return getattr(api, method)(path, data, format="json")


@pytest.mark.parametrize("name", ENDPOINTS)
def test_anonymous_is_401_and_nothing_changes(ticket_a, name):
    before = state()
    response = call(APIClient(), name, ticket_a)
    assert response.status_code == 401
    assert state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_key_without_the_support_scope_is_403_for_writes(
    make_api_client, programme, ticket_a, name
):
    # given: a read-only key
    api = keyed(make_api_client, [programme], scopes=["read"])
    before = state()
    # when
    response = call(api, name, ticket_a)
    # then
    expected = 200 if ENDPOINTS[name][0] == "get" else 403
    assert response.status_code == expected
    assert state() == before


@pytest.mark.parametrize("name", ["detail", "transition", "messages"])
def test_a_key_of_another_programme_gets_404_and_nothing_changes(key_b, ticket_a, ticket_b, name):
    before = state()
    response = call(key_b, name, ticket_a)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ticket_not_found"
    assert state() == before


def test_a_key_of_another_programme_neither_lists_nor_creates_for_a(key_b, ticket_a, ticket_b):
    # given
    before = state()
    # when
    listed = call(key_b, "list", ticket_a)
    created = call(key_b, "create", ticket_a)  # EMP-001 is a member of A
    # then
    assert [t["id"] for t in listed.json()["results"]] == [ticket_b.pk]
    assert created.status_code == 404
    assert created.json()["error"]["fields"] == {"member": ["Not found."]}
    assert state() == before


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_member_session_is_refused(shopper_session, ticket_a, name):
    before = state()
    response = call(shopper_session, name, ticket_a)
    assert response.status_code == 403
    assert state() == before


@pytest.fixture
def shopper_session(member_user):
    return session(member_user)


@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_test_key_sees_no_ticket_and_writes_nothing(make_api_client, programme, ticket_a, name):
    api = keyed(make_api_client, [programme], scopes=["read", "support"], is_test=True)
    before = state()
    response = call(api, name, ticket_a)
    if name == "list":
        assert response.json()["results"] == []
    elif name == "detail":
        assert response.status_code == 404
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "tickets_test_mode_unsupported"
    assert state() == before


@pytest.mark.parametrize("slash", [False, True])
@pytest.mark.parametrize("name", ENDPOINTS)
def test_a_key_of_the_programme_uses_every_endpoint_with_or_without_slash(
    key_a, ticket_a, name, slash
):
    response = call(key_a, name, ticket_a, slash=slash)
    assert response.status_code in (200, 201), response.content


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
def test_a_staff_agent_or_manager_session_reads_the_programmes_tickets(
    request, ticket_a, ticket_b, user
):
    person = request.getfixturevalue(user)
    person.is_staff = True
    person.save(update_fields=["is_staff"])
    response = session(person).get(LIST)
    assert [t["id"] for t in response.json()["results"]] == [ticket_a.pk]


def test_the_filters(key_a, side_a, policies, agent_a):
    # given
    high = open_ticket(side_a)
    normal = open_ticket(side_a, category="other")
    ticket_assign(ticket=normal, assignee=agent_a, actor=agent_a)
    tickets_sla_sweep(now=at(3))  # high misses its 2 h first response

    def ids(**params):
        response = key_a.get(LIST, params)
        assert response.status_code == 200, response.content
        return sorted(t["id"] for t in response.json()["results"])

    # then
    assert ids(priority="normal") == [normal.pk]
    assert ids(breached="true") == [high.pk]
    assert ids(breached="false") == [normal.pk]
    assert ids(assignee=agent_a.username) == [normal.pk]
    assert ids(assignee="none") == [high.pk]
    assert ids(status="open", booking_id=side_a.order.booking_id) == sorted([high.pk, normal.pk])
    assert key_a.get(LIST, {"status": "bogus"}).status_code == 400


def test_create_with_an_order_and_an_idempotency_key_opens_once(key_a, side_a, policies):
    # given
    body = {
        "member": "EMP-001",
        "booking_id": side_a.order.booking_id,
        "category": "not_received",
        "description": "The member called: no e-mail.",
        "priority": "urgent",
    }
    # when
    first = key_a.post(LIST, body, format="json", HTTP_IDEMPOTENCY_KEY="crm-1")
    again = key_a.post(LIST, body, format="json", HTTP_IDEMPOTENCY_KEY="crm-1")
    other = key_a.post(
        LIST, {**body, "priority": "low"}, format="json", HTTP_IDEMPOTENCY_KEY="crm-1"
    )
    # then
    assert first.status_code == 201, first.content
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    assert other.status_code == 422
    [ticket] = Ticket.objects.all()
    data = first.json()
    assert data["id"] == ticket.pk
    assert (data["booking_id"], data["priority"], data["status"]) == (
        side_a.order.booking_id,
        "urgent",
        "open",
    )
    audit = AuditEvent.objects.get(action="ticket.open")
    assert audit.actor_label.startswith("api:")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"member": "EMP-001", "category": "nope", "description": "x"}, 400, "invalid"),
        ({"member": "EMP-001", "category": "other", "description": ""}, 400, "invalid"),
        ({"member": "EMP-001", "category": "other", "description": "x", "extra": 1}, 400, None),
        ({"member": "NOBODY", "category": "other", "description": "x"}, 404, "not_found"),
        (
            {"member": "EMP-001", "category": "other", "description": "x", "booking_id": "PLM-X"},
            404,
            "not_found",
        ),
        (
            {"member": "EMP-001", "category": "other", "description": "x", "priority": "max"},
            400,
            "invalid",
        ),
    ],
)
def test_bad_create_input_is_a_specific_4xx_and_nothing_changes(key_a, side_a, body, status, code):
    before = state()
    response = key_a.post(LIST, body, format="json")
    assert response.status_code == status, response.content
    if code:
        assert response.json()["error"]["code"] == code
    assert state() == before


def test_an_order_of_another_member_is_a_404(key_a, side_a, programme):
    from tests.factories import MemberFactory

    MemberFactory(programme=programme, external_id="EMP-002")
    before = state()
    response = key_a.post(
        LIST,
        {
            "member": "EMP-002",
            "booking_id": side_a.order.booking_id,
            "category": "other",
            "description": "x",
        },
        format="json",
    )
    assert response.status_code == 404
    assert state() == before


def test_transition_and_messages(key_a, ticket_a, smtp_server):
    # when
    started = key_a.post(
        f"{LIST}/{ticket_a.pk}/transition", {"status": "in_progress"}, format="json"
    )
    replied = key_a.post(
        f"{LIST}/{ticket_a.pk}/messages", {"kind": "reply", "body": "Sent again."}, format="json"
    )
    noted = key_a.post(
        f"{LIST}/{ticket_a.pk}/messages", {"kind": "note", "body": "Internal."}, format="json"
    )
    bad = key_a.post(f"{LIST}/{ticket_a.pk}/transition", {"status": "open"}, format="json")
    # then
    assert started.status_code == 200 and started.json()["status"] == "in_progress"
    assert replied.status_code == 201
    assert noted.status_code == 201
    kinds = [(m["kind"], m["author"][:4]) for m in noted.json()["messages"]]
    assert kinds == [("reply", "api:"), ("note", "api:")]
    assert noted.json()["first_responded_at"] is not None
    assert bad.status_code == 409
    assert bad.json()["error"]["code"] == "invalid_transition"


def test_bad_message_input_changes_nothing(key_a, ticket_a):
    before = state()
    empty = key_a.post(
        f"{LIST}/{ticket_a.pk}/messages", {"kind": "reply", "body": "   "}, format="json"
    )
    member_kind = key_a.post(
        f"{LIST}/{ticket_a.pk}/messages", {"kind": "member_reply", "body": "x"}, format="json"
    )
    assert (empty.status_code, member_kind.status_code) == (400, 400)
    assert state() == before
