"""Events through workflow rules: POST /api/v1/events and GET /api/v1/events/{event_id}, the
ingestion service, what each rule did and why, replays, rollback, test mode, and the events
admin."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Voucher
from orders.models import Event, EventRuleOutcome, Order, WorkflowRule
from orders.services import rule_save
from orders.services import rules as rules_service
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, IdempotencyKey, Member, OutboxMessage
from plum.services.idempotency import idempotency_purge
from tests.factories import MemberFactory
from wallets.models import Account, LedgerTransaction

pytestmark = pytest.mark.django_db
D = Decimal
URL = "/api/v1/events"


def cond(field, operator, value, value_type="number"):
    return {"field": field, "operator": operator, "value_type": value_type, "value": value}


@pytest.fixture
def make_rule(programme):
    def make(
        *,
        name,
        action="reward",
        campaign=None,
        points=None,
        conditions=(),
        event_type="purchase",
        priority=100,
        stop_after=False,
        is_active=True,
        on=None,
    ):
        rule = WorkflowRule(
            programme=on or programme,
            name=name,
            event_type=event_type,
            action=action,
            campaign=campaign,
            points=points,
            priority=priority,
            stop_after=stop_after,
            is_active=is_active,
        )
        return rule_save(rule=rule, conditions=list(conditions), actor=SYSTEM)

    return make


def body(event_id="E-1", *, member="EMP-001", data=None, type="purchase", **extra):
    return {
        "event_id": event_id,
        "type": type,
        "occurred_at": "2026-11-30T10:00:00Z",
        "member": {"external_id": member} if isinstance(member, str) else member,
        "data": {"spend": 600, "visits": 2} if data is None else data,
        **extra,
    }


def post(api, payload, **headers):
    return api.post(URL, payload, format="json", **headers)


def brief(response):
    """(rule name, matched, outcome, reason, code) per rule, in evaluation order."""
    return [
        (o["rule_name"], o["matched"], o["outcome"], o["reason"], o["code"])
        for o in response.json()["outcomes"]
    ]


# --- rules at work -----------------------------------------------------------------------


def test_rules_run_in_priority_order_and_stop_after_a_matching_stop_rule(
    client_api, make_rule, campaign
):
    # given
    make_rule(
        name="Third visit",
        action="points",
        points=50,
        priority=10,
        conditions=[cond("visits", "==", "3")],
    )
    make_rule(
        name="Big spender",
        campaign=campaign,
        priority=20,
        stop_after=True,
        conditions=[cond("spend", ">=", "500")],
    )
    make_rule(
        name="Any spend",
        action="points",
        points=10,
        priority=30,
        conditions=[cond("spend", ">", "0")],
    )
    # when
    response = post(client_api, body(data={"spend": 600, "visits": 2}))
    # then
    assert response.status_code == 201, response.json()
    assert brief(response) == [
        ("Third visit", False, "not_matched", "condition_false", ""),
        ("Big spender", True, "issued", "", ""),
        ("Any spend", False, "skipped", "stopped", ""),
    ]
    outcomes = response.json()["outcomes"]
    assert outcomes[0]["failed_condition"] == 0
    assert outcomes[0]["detail"] == "visits is 2: not == 3."
    order = Order.objects.get()
    assert outcomes[1]["booking_id"] == order.booking_id
    assert (order.source, order.reference, order.status) == ("event", "E-1", "completed")
    assert outcomes[2]["detail"].startswith("Not evaluated: rule ")
    assert response.json()["result"] == "rewarded"
    assert LedgerTransaction.objects.count() == 0


def test_a_stop_rule_that_does_not_match_lets_later_rules_run(client_api, make_rule, campaign):
    make_rule(
        name="Big spender",
        campaign=campaign,
        priority=1,
        stop_after=True,
        conditions=[cond("spend", ">=", "1000")],
    )
    make_rule(name="Any spend", action="points", points=10, priority=2)
    response = post(client_api, body(data={"spend": 600}))
    assert brief(response) == [
        ("Big spender", False, "not_matched", "condition_false", ""),
        ("Any spend", True, "points_awarded", "", ""),
    ]


def test_a_reward_and_points_from_one_event(client_api, make_rule, campaign, programme):
    # given
    make_rule(name="Reward", campaign=campaign, conditions=[cond("spend", ">=", "500")])
    make_rule(
        name="Points",
        action="points",
        points=120,
        conditions=[cond("tier", "in", "gold,platinum", "string")],
    )
    # when
    response = post(client_api, body(data={"spend": 500, "tier": "gold"}))
    # then
    assert brief(response) == [
        ("Reward", True, "issued", "", ""),
        ("Points", True, "points_awarded", "", ""),
    ]
    member = Member.objects.get(programme=programme, external_id="EMP-001")
    assert Account.objects.get(member=member).balance == 120
    txn = LedgerTransaction.objects.get()
    points = response.json()["outcomes"][1]
    assert (points["points"], points["points_transaction"]) == (120, txn.pk)
    event = Event.objects.get()
    assert (txn.reason, txn.reference, txn.idempotency_key) == (
        "programme_rule",
        "E-1",
        f"event:{event.pk}:rule:{WorkflowRule.objects.get(name='Points').pk}",
    )
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (1, D("500.00"))


def test_a_governance_refusal_is_recorded_with_its_code(
    client_api, make_rule, make_campaign, programme, snapshot
):
    # given: one reward left
    campaign = make_campaign(programme, max_rewards=1)
    make_rule(name="Reward", campaign=campaign)
    make_rule(name="Points", action="points", points=5)
    assert post(client_api, body("E-1", member="A")).status_code == 201
    # when
    response = post(client_api, body("E-2", member="B"))
    # then: stored, with the refusal; the points rule still ran
    assert response.status_code == 201
    assert brief(response) == [
        ("Reward", True, "refused", "", "campaign_exhausted"),
        ("Points", True, "points_awarded", "", ""),
    ]
    assert response.json()["outcomes"][0]["detail"] == (
        "The campaign has issued its maximum number of rewards."
    )
    assert response.json()["outcomes"][0]["booking_id"] is None
    assert Order.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.issued_count == 1
    assert Event.objects.get(event_id="E-2").outcomes.get(rule__name="Reward").code == (
        "campaign_exhausted"
    )


def test_every_action_refused_makes_the_result_refused(
    client_api, make_rule, make_campaign, programme
):
    campaign = make_campaign(programme, active=False)
    make_rule(name="Reward", campaign=campaign)
    response = post(client_api, body())
    assert brief(response) == [("Reward", True, "refused", "", "campaign_not_active")]
    assert response.json()["result"] == "refused"


def test_a_hold_campaign_puts_the_order_in_the_approval_queue(
    client_api, make_rule, make_campaign, programme
):
    campaign = make_campaign(programme, approval_mode="manual")
    make_rule(name="Held", campaign=campaign)
    response = post(client_api, body())
    assert brief(response) == [("Held", True, "held", "", "")]
    order = Order.objects.get()
    assert (order.status, order.approval_state) == ("pending", "pending")
    assert response.json()["outcomes"][0]["booking_id"] == order.booking_id
    assert response.json()["outcomes"][0]["detail"] == (
        f"Order {order.booking_id} is pending approval."
    )
    campaign.refresh_from_db()
    assert campaign.issued_count == 0


def test_no_rule_for_the_type_inactive_and_other_types_are_not_considered(
    client_api, make_rule, campaign
):
    make_rule(name="Inactive", campaign=campaign, is_active=False)
    make_rule(name="Visits", campaign=campaign, event_type="visit")
    response = post(client_api, body())
    assert response.status_code == 201
    assert (response.json()["result"], response.json()["outcomes"]) == ("no_rules", [])
    assert Event.objects.count() == 1
    assert Order.objects.count() == 0


def test_missing_fields_and_type_mismatches_are_recorded(client_api, make_rule, campaign):
    make_rule(
        name="Fuel", campaign=campaign, priority=1, conditions=[cond("fuel_litres", ">", "40")]
    )
    make_rule(name="Spend", campaign=campaign, priority=2, conditions=[cond("spend", ">=", "500")])
    response = post(client_api, body(data={"spend": "900"}))
    assert brief(response) == [
        ("Fuel", False, "not_matched", "missing_field", ""),
        ("Spend", False, "not_matched", "type_mismatch", ""),
    ]
    assert response.json()["result"] == "not_matched"
    assert response.json()["outcomes"][1]["conditions"] == [
        {"field": "spend", "operator": ">=", "value_type": "number", "value": "500"}
    ]


def test_editing_a_rule_later_does_not_rewrite_why(client_api, make_rule, campaign):
    rule = make_rule(name="Spend", campaign=campaign, conditions=[cond("spend", ">=", "900")])
    post(client_api, body())
    rule_save(rule=rule, conditions=[cond("spend", ">=", "1")], actor=SYSTEM)
    response = client_api.get(f"{URL}/E-1")
    assert response.json()["outcomes"][0]["conditions"][0]["value"] == "900"
    assert response.json()["outcomes"][0]["detail"] == "spend is 600: not >= 900."


# --- the member ---------------------------------------------------------------------------


def test_the_member_is_created_or_updated_like_a_recipient(client_api, programme):
    member = {"external_id": "NEW-1", "email": "new@example.com", "phone": "+919800000001"}
    assert post(client_api, body(member=member)).status_code == 201
    created = Member.objects.get(programme=programme, external_id="NEW-1")
    assert (created.email, created.phone) == ("new@example.com", "+919800000001")
    post(client_api, body("E-2", member={"external_id": "NEW-1", "email": "b@example.com"}))
    created.refresh_from_db()
    assert created.email == "b@example.com"


def test_invalid_member_details_are_422_and_store_nothing(
    client_api, make_rule, campaign, snapshot
):
    make_rule(name="Reward", campaign=campaign)
    before = snapshot()
    response = post(client_api, body(member={"external_id": "X", "phone": "12345"}))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_recipient"
    assert list(response.json()["error"]["fields"]) == ["member.phone"]
    assert snapshot() == before
    assert Event.objects.count() == 0


# --- one transaction ----------------------------------------------------------------------


def test_an_unexpected_error_in_an_action_rolls_the_whole_event_back(
    make_rule, campaign, programme, client_api, snapshot, monkeypatch
):
    # given: the reward runs first and writes its order, then the points action fails after
    # the ledger was written
    make_rule(name="Reward", campaign=campaign, priority=1)
    make_rule(name="Points", action="points", points=5, priority=2)
    before = snapshot()
    real = rules_service.points_earn

    def earn_then_fail(**kwargs):
        real(**kwargs)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rules_service, "points_earn", earn_then_fail)
    # when
    with pytest.raises(RuntimeError):
        rules_service.event_ingest(
            client=client_api.plum_client,
            programme=programme,
            event_id="E-1",
            event_type="purchase",
            occurred_at=timezone.now(),
            member={"external_id": "NEW-9", "email": "n@example.com"},
            data={},
        )
    # then: nothing at all
    assert snapshot() == before
    assert (Event.objects.count(), EventRuleOutcome.objects.count()) == (0, 0)
    assert (LedgerTransaction.objects.count(), Account.objects.count()) == (0, 0)
    # and the caller's retry is a first delivery
    monkeypatch.setattr(rules_service, "points_earn", real)
    response = post(client_api, body(member="NEW-9"))
    assert response.status_code == 201
    assert brief(response)[1] == ("Points", True, "points_awarded", "", "")


def test_an_unexpected_error_over_http_is_a_500_and_frees_the_key(
    make_rule, campaign, make_api_client, programme, monkeypatch
):
    make_rule(name="Reward", campaign=campaign)
    _, key = make_api_client([programme])
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def fail(**kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(rules_service, "_issue", fail)
    response = post(api, body(), HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert (Event.objects.count(), IdempotencyKey.objects.count()) == (0, 0)


def test_audit_and_outbox_are_written_with_the_event(client_api, make_rule, campaign):
    make_rule(name="Reward", campaign=campaign)
    post(client_api, body())
    event = Event.objects.get()
    audit = AuditEvent.objects.get(action="event.ingest")
    assert (audit.object_id, audit.programme_id) == (str(event.pk), event.programme_id)
    assert audit.changes["result"] == [None, "rewarded"]
    message = OutboxMessage.objects.get(payload__type="event.processed")
    assert message.payload["data"]["outcomes"][0]["booking_id"] == Order.objects.get().booking_id


# --- replays ------------------------------------------------------------------------------


def test_a_repeated_event_id_answers_the_original_outcome_and_changes_nothing(
    client_api, make_rule, campaign, snapshot
):
    make_rule(name="Reward", campaign=campaign)
    first = post(client_api, body())
    before = snapshot()
    again = post(client_api, body(data={"spend": 1}, member={"external_id": "OTHER"}))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert snapshot() == before


def test_an_event_id_replayed_after_a_day_answers_the_original_outcome(
    client_api, make_rule, campaign, snapshot
):
    # given: an event a day old, its Idempotency-Key purged as the hourly task does
    make_rule(name="Reward", campaign=campaign)
    first = post(client_api, body(), HTTP_IDEMPOTENCY_KEY="delivery-1")
    assert first.status_code == 201
    day_ago = timezone.now() - timedelta(days=1, hours=1)
    Event.objects.update(received_at=day_ago)
    IdempotencyKey.objects.update(created_at=day_ago)
    assert idempotency_purge() == 1
    before = snapshot()
    # when: the POS re-sends it, with the same Idempotency-Key
    again = post(client_api, body(), HTTP_IDEMPOTENCY_KEY="delivery-1")
    # then
    assert again.status_code == 200
    assert {**again.json(), "received_at": "aged"} == {**first.json(), "received_at": "aged"}
    assert again.json()["received_at"] == day_ago.isoformat().replace("+00:00", "Z")
    assert "Idempotent-Replayed" not in again
    assert snapshot() == before
    assert Order.objects.count() == 1
    campaign.refresh_from_db()
    assert campaign.issued_count == 1


def test_the_same_event_id_from_another_client_is_another_event(
    client_api, make_api, make_rule, campaign, programme
):
    make_rule(name="Reward", campaign=campaign)
    other = make_api([programme])
    assert post(client_api, body()).status_code == 201
    assert post(other, body()).status_code == 201
    assert Order.objects.count() == 2


def test_an_idempotency_key_replays_byte_for_byte(client_api, make_rule, campaign):
    make_rule(name="Reward", campaign=campaign)
    first = post(client_api, body(), HTTP_IDEMPOTENCY_KEY="k")
    again = post(client_api, body(), HTTP_IDEMPOTENCY_KEY="k")
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


# --- test mode ----------------------------------------------------------------------------


def test_a_test_key_makes_test_orders_and_refuses_points(
    make_api, make_rule, programme, make_campaign
):
    campaign = make_campaign(programme, max_rewards=1)
    make_rule(name="Reward", campaign=campaign)
    make_rule(name="Points", action="points", points=5)
    api = make_api([programme], is_test=True)
    response = post(api, body())
    assert brief(response) == [
        ("Reward", True, "issued", "", ""),
        ("Points", True, "refused", "", "points_test_mode_unsupported"),
    ]
    assert response.json()["is_test"] is True
    order = Order.objects.get()
    assert order.is_test is True
    assert Voucher.objects.get(pk=order.voucher_id).is_test is True
    campaign.refresh_from_db()
    assert campaign.issued_count == 0
    assert LedgerTransaction.objects.count() == 0


# --- the API ------------------------------------------------------------------------------


def test_get_returns_the_stored_outcome(client_api, make_rule, campaign):
    make_rule(name="Reward", campaign=campaign)
    first = post(client_api, body("POS/2026:1"))
    for path in (f"{URL}/POS/2026:1", f"{URL}/POS/2026:1/", f"{URL}/POS%2F2026:1"):
        response = client_api.get(path)
        assert (response.status_code, response.json()) == (200, first.json()), path


def test_the_trailing_slash_is_accepted(client_api):
    assert client_api.post(f"{URL}/", body(), format="json").status_code == 201


def test_the_response_shape(client_api, make_rule, campaign):
    make_rule(name="Reward", campaign=campaign)
    data = post(client_api, body()).json()
    event = Event.objects.get()
    order = Order.objects.get()
    assert data == {
        "id": event.pk,
        "event_id": "E-1",
        "type": "purchase",
        "occurred_at": "2026-11-30T10:00:00Z",
        "received_at": data["received_at"],
        "programme": "alpha",
        "member": "EMP-001",
        "data": {"spend": 600, "visits": 2},
        "is_test": False,
        "result": "rewarded",
        "outcomes": [
            {
                "position": 1,
                "rule": WorkflowRule.objects.get().pk,
                "rule_name": "Reward",
                "action": "reward",
                "matched": True,
                "outcome": "issued",
                "reason": "",
                "failed_condition": None,
                "detail": f"Order {order.booking_id} completed.",
                "code": "",
                "booking_id": order.booking_id,
                "points": None,
                "points_transaction": None,
                "conditions": [],
            }
        ],
    }


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        (body(data=[1, 2]), ["data"]),
        (body(type="Big Purchase"), ["type"]),
        (body(event_id=""), ["event_id"]),
        ({**body(), "colour": "red"}, ["colour"]),
        ({**body(), "member": {"external_id": "A", "shoe": 9}}, ["member"]),
        ({k: v for k, v in body().items() if k != "occurred_at"}, ["occurred_at"]),
    ],
)
def test_malformed_events_are_400_and_store_nothing(client_api, payload, fields):
    response = post(client_api, payload)
    assert response.status_code == 400
    assert sorted(response.json()["error"]["fields"]) == fields
    assert Event.objects.count() == 0


def test_a_key_of_several_programmes_names_the_programme(make_api, programme, other_programme):
    api = make_api([programme, other_programme])
    response = post(api, body())
    assert (response.status_code, response.json()["error"]["fields"]) == (
        400,
        {"programme": ["This field is required."]},
    )
    response = post(api, body(programme="beta"))
    assert response.status_code == 201
    assert Event.objects.get().programme == other_programme


def test_anonymous_is_401(api):
    assert post(api, body()).status_code == 401
    assert api.get(f"{URL}/E-1").status_code == 401


def test_a_key_without_the_issue_scope_is_403(make_api, programme):
    response = post(make_api([programme], scopes=["read"]), body())
    assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_denied")


def test_another_programme_is_404_and_its_rules_never_apply(
    make_api, programme, other_programme, make_rule, campaign
):
    make_rule(name="Alpha reward", campaign=campaign)
    theirs = make_api([other_programme])
    assert post(theirs, body(programme="alpha")).status_code == 404
    response = post(theirs, body())
    assert (response.status_code, response.json()["result"]) == (201, "no_rules")
    assert Order.objects.count() == 0


def test_another_clients_event_is_404(client_api, make_api, programme):
    post(client_api, body())
    other = make_api([programme])
    response = other.get(f"{URL}/E-1")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "event_not_found")


def test_a_staff_session_cannot_post_events(api, make_user, programme):
    api.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    response = post(api, body())
    assert (response.status_code, response.json()["error"]["code"]) == (403, "api_client_required")


def test_the_detail_costs_a_constant_number_of_queries(
    client_api, make_rule, make_campaign, programme, django_assert_max_num_queries
):
    for index in range(6):
        make_rule(name=f"R{index}", campaign=make_campaign(programme, name=f"C{index}"))
    post(client_api, body())
    with django_assert_max_num_queries(8):
        assert client_api.get(f"{URL}/E-1").status_code == 200


# --- the events admin ---------------------------------------------------------------------

EVENTS = "/admin/orders/event/"


@pytest.fixture
def two_events(client_api, make_rule, make_campaign, programme):
    """E-1 issued a reward; E-2 was refused (campaign exhausted) for member B."""
    campaign = make_campaign(programme, max_rewards=1)
    make_rule(name="Reward", campaign=campaign, conditions=[cond("spend", ">=", "100")])
    post(client_api, body("E-1", member="A"))
    post(client_api, body("E-2", member="B"))
    return Event.objects.get(event_id="E-1"), Event.objects.get(event_id="E-2")


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_the_events_admin_answers_why(client, make_user, programme, two_events, role):
    issued, refused = two_events
    client.force_login(make_user(role, programme))
    page = client.get(f"{EVENTS}{refused.pk}/change/").content.decode()
    assert "campaign_exhausted" in page
    assert "The campaign has issued its maximum number of rewards." in page
    assert client.post(f"{EVENTS}{refused.pk}/change/", {}).status_code == 403


def test_the_events_list_filters_by_outcome_member_and_type(
    client, make_user, programme, two_events
):
    issued, refused = two_events
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    listed = client.get(f"{EVENTS}?outcome=refused").context["cl"].result_list
    assert [e.pk for e in listed] == [refused.pk]
    listed = client.get(f"{EVENTS}?q=A").context["cl"].result_list
    assert [e.pk for e in listed] == [issued.pk]
    listed = client.get(f"{EVENTS}?type=purchase&result=rewarded").context["cl"].result_list
    assert [e.pk for e in listed] == [issued.pk]


def test_events_of_another_programme_are_not_found(
    client, make_user, other_programme, make_api, two_events
):
    issued, _ = two_events
    client.force_login(make_user(roles.SUPPORT_AGENT, other_programme))
    assert client.get(EVENTS).context["cl"].result_list.count() == 0
    assert client.get(f"{EVENTS}{issued.pk}/change/").status_code == 404


def test_members_from_a_factory_are_found_by_external_id(client_api, programme):
    MemberFactory(programme=programme, external_id="EMP-001", email="old@example.com")
    post(client_api, body())
    assert Event.objects.get().member.email == "old@example.com"


# --- the database's own rules -------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"outcome": "refused", "matched": True, "code": ""},
        {"outcome": "issued", "matched": True},
        {"outcome": "points_awarded", "matched": True},
        {"outcome": "not_matched", "matched": True},
        {"outcome": "issued", "matched": False},
    ],
)
def test_the_database_refuses_an_inconsistent_outcome(client_api, make_rule, campaign, fields):
    rule = make_rule(name="Reward", campaign=campaign, conditions=[cond("spend", ">", "1000")])
    post(client_api, body())
    event = Event.objects.get()
    EventRuleOutcome.objects.filter(event=event).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        EventRuleOutcome.objects.create(
            event=event, rule=rule, position=1, rule_name="x", action="reward", **fields
        )


def test_the_database_refuses_a_second_event_with_the_same_id(client_api):
    post(client_api, body())
    event = Event.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Event.objects.create(
            programme=event.programme,
            api_client=event.api_client,
            event_id=event.event_id,
            event_type="purchase",
            occurred_at=timezone.now(),
            member=event.member,
        )
