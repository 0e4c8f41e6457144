"""The member audit log: every action taken against a member's account, with actor and time,
from the kernel's audit log (AuditEvent.member_id, or the member as the event's object)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent
from plum.services.audit import audit_log, audit_verify, event_content_hash
from plum.services.programmes import member_upsert
from tests.factories import UserFactory
from wallets.models import Account
from wallets.selectors import member_audit_log
from wallets.services import points_adjust, points_burn, points_earn, transaction_reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def story(programme, other_programme, make_user, make_api_client):
    """Alice is created and corrected by a support agent, earns through an API client, burns,
    gets a manager's adjustment and a reversal. Someone else (same external id, other
    programme) earns too: none of that is Alice's."""
    agent = make_user(roles.SUPPORT_AGENT, programme, username="agent-ann")
    manager = make_user(roles.PROGRAMME_MANAGER, programme, username="pm-pat")
    hr, _ = make_api_client([programme], name="HR system")
    alice, _ = member_upsert(
        programme=programme, external_id="EMP-001", actor=agent, data={"name": "Alice"}
    )
    member_upsert(
        programme=programme,
        external_id="EMP-001",
        actor=agent,
        data={"email": "alice@example.com"},
    )
    earn, _ = points_earn(member=alice, points=100, idempotency_key="e1", actor=hr)
    burn, _ = points_burn(
        member=alice, points=40, reference="BK-1", idempotency_key="b1", actor=SYSTEM
    )
    points_adjust(member=alice, points=5, note="goodwill", idempotency_key="a1", actor=manager)
    transaction_reverse(transaction=burn, actor=manager, note="order cancelled")
    other, _ = member_upsert(
        programme=other_programme, external_id="EMP-001", actor=SYSTEM, data={"name": "Olga"}
    )
    points_earn(member=other, points=7, idempotency_key="o1", actor=SYSTEM)
    return {"alice": alice, "other": other, "agent": agent, "manager": manager}


def test_the_log_lists_every_action_against_the_member_newest_first(story):
    # when
    events = list(member_audit_log(member=story["alice"]))
    # then
    assert [(e.action, e.actor_label) for e in events] == [
        ("points.reversal", "pm-pat"),
        ("points.adjustment", "pm-pat"),
        ("points.burn", "system"),
        ("points.earn", "api:HR system"),
        ("wallet.create", "api:HR system"),
        ("member.update", "agent-ann"),
        ("member.create", "agent-ann"),
    ]
    assert events[5].changes == {"email": ["", "alice@example.com"]}
    assert events[3].changes["balance"] == [0, 100]
    assert events[2].changes["reference"] == [None, "BK-1"]
    assert all(e.member_id == story["alice"].pk for e in events)


def test_events_that_only_name_the_member_as_object_are_found(story):
    # given: an event written the old way (object only, member_id unset)
    old = AuditEvent(
        occurred_at=AuditEvent.objects.first().occurred_at,
        actor_type="system",
        actor_label="legacy",
        action="member.legacy",
        object_type="plum.member",
        object_id=str(story["alice"].pk),
    )
    old.hash = event_content_hash(old)
    old.save(force_insert=True)
    # when
    actions = [e.action for e in member_audit_log(member=story["alice"])]
    # then
    assert actions[0] == "member.legacy"
    assert len(actions) == 8


def test_the_log_is_one_query(story, django_assert_num_queries):
    with django_assert_num_queries(1):
        list(member_audit_log(member=story["alice"], actions=["points.earn", "points.burn"]))


def test_member_id_is_hashed_only_when_set(story):
    # given
    event = AuditEvent.objects.filter(action="points.earn", member_id=story["alice"].pk).first()
    legacy = AuditEvent.objects.filter(action="ledger_account.create", member_id=None).first()
    # when
    event.member_id = story["other"].pk
    # then: changing the member breaks the hash; events without a member hash as before
    assert event_content_hash(event) != event.hash
    assert event_content_hash(legacy) == legacy.hash
    assert audit_verify()[2] == []


def test_audit_log_takes_the_member_from_the_object_or_the_caller(story):
    # given
    wallet = Account.objects.get(member=story["alice"])
    # when
    from_object = audit_log(actor=SYSTEM, action="test.wallet", obj=wallet)
    given = audit_log(actor=SYSTEM, action="test.given", member_id=story["other"].pk)
    neither = audit_log(actor=SYSTEM, action="test.none", obj=story["manager"])
    # then
    assert (from_object.member_id, given.member_id, neither.member_id) == (
        story["alice"].pk,
        story["other"].pk,
        None,
    )


# --- the admin page --------------------------------------------------------------------------


def audit_url(member):
    return reverse("admin:wallets_member_audit", args=[member.pk])


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.PROGRAMME_MANAGER, roles.FINANCE])
def test_programme_staff_read_the_members_log(client, make_user, programme, story, role):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(audit_url(story["alice"]))
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert [e.action for e in response.context["page_obj"]][:2] == [
        "points.reversal",
        "points.adjustment",
    ]
    assert "agent-ann" in html
    assert "alice@example.com" in html


def test_another_programmes_member_is_404(client, make_user, programme, story):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(audit_url(story["other"]))
    # then
    assert response.status_code == 404


def test_a_user_without_a_role_is_404(client, story):
    # given: staff, but no programme
    user = UserFactory(username="nobody", is_staff=True)
    client.force_login(user)
    # when
    response = client.get(audit_url(story["alice"]))
    # then
    assert response.status_code == 404


def test_the_member_page_links_to_the_log(client, make_user, programme, story):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(reverse("admin:plum_member_change", args=[story["alice"].pk]))
    # then
    assert response.status_code == 200
    assert audit_url(story["alice"]) in response.content.decode()


def test_the_page_costs_the_same_queries_however_long_the_log(
    client, make_user, programme, story, django_assert_max_num_queries
):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    url = audit_url(story["alice"])
    client.get(url)
    with CaptureQueriesContext(connection) as short:
        client.get(url)
    for i in range(60):
        points_earn(member=story["alice"], points=1, idempotency_key=f"m{i}", actor=SYSTEM)
    # when
    with django_assert_max_num_queries(12), CaptureQueriesContext(connection) as long:
        response = client.get(url)
    # then: 50 a page
    assert len(response.context["page_obj"]) == 50
    assert response.context["page_obj"].paginator.count == 67
    assert len(long) == len(short)
