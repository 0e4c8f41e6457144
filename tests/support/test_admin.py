"""Tickets and SLA policies in the admin: scoped per programme; a programme manager edits the
programme's SLA policies (audited through sla_policy_set), an agent and another programme's
manager do not; tickets show their SLA state and are read-only."""

import pytest
from django.test import Client
from django.urls import reverse

from plum import roles
from plum.models import AuditEvent
from support.models import SlaPolicy
from support.services import tickets_sla_sweep
from tests.support.conftest import at

pytestmark = pytest.mark.django_db


def staff(user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def manager_b(make_user, other_programme):
    return make_user(roles.PROGRAMME_MANAGER, other_programme)


def test_a_manager_adds_and_changes_the_programmes_sla_policy(manager_a, programme):
    # given
    client = staff(manager_a)
    # when
    added = client.post(
        reverse("admin:support_slapolicy_add"),
        {
            "programme": programme.pk,
            "priority": "urgent",
            "first_response_hours": 1,
            "resolution_hours": 4,
        },
    )
    policy = SlaPolicy.objects.get()
    changed = client.post(
        reverse("admin:support_slapolicy_change", args=[policy.pk]),
        {"first_response_hours": 2, "resolution_hours": 6},
    )
    # then
    assert (added.status_code, changed.status_code) == (302, 302)
    policy.refresh_from_db()
    assert (policy.first_response_hours, policy.resolution_hours) == (2, 6)
    audits = AuditEvent.objects.filter(action="sla_policy.set").order_by("pk")
    assert [a.changes["resolution_hours"] for a in audits] == [[None, 4], [4, 6]]
    assert {a.actor_label for a in audits} == {manager_a.username}


def test_bad_hours_are_refused_by_the_form_and_nothing_changes(manager_a, programme):
    # when
    response = staff(manager_a).post(
        reverse("admin:support_slapolicy_add"),
        {
            "programme": programme.pk,
            "priority": "urgent",
            "first_response_hours": 5,
            "resolution_hours": 4,
        },
    )
    # then
    assert response.status_code == 200
    assert SlaPolicy.objects.count() == 0


def test_another_programmes_manager_and_an_agent_cannot_touch_the_policy(
    manager_b, agent_a, policies
):
    # given
    policy = policies["high"]
    change = reverse("admin:support_slapolicy_change", args=[policy.pk])
    # when
    other = staff(manager_b).post(change, {"first_response_hours": 9, "resolution_hours": 9})
    agent = staff(agent_a).post(change, {"first_response_hours": 9, "resolution_hours": 9})
    # then
    assert other.status_code in (403, 404)
    assert agent.status_code in (403, 404)
    policy.refresh_from_db()
    assert policy.first_response_hours == 2


def test_the_ticket_list_shows_the_sla_and_is_scoped(manager_a, manager_b, ticket_a, ticket_b):
    # given
    tickets_sla_sweep(now=at(3))
    # when
    mine = staff(manager_a).get(reverse("admin:support_ticket_changelist"), {"breached": "yes"})
    theirs = staff(manager_b).get(reverse("admin:support_ticket_changelist"))
    # then
    assert [t.pk for t in mine.context["cl"].result_list] == [ticket_a.pk]
    assert ticket_a.pk not in [t.pk for t in theirs.context["cl"].result_list]
    detail = staff(manager_b).get(reverse("admin:support_ticket_change", args=[ticket_a.pk]))
    assert detail.status_code in (302, 404)
