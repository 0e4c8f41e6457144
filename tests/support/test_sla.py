"""The SLA clock with a frozen time source: every service takes `now`, so these tests drive
the clock by hand — creation, pause (awaiting member), resume, breach, escalation, once."""

import pytest

from plum.models import AuditEvent, OutboxMessage
from support.models import Ticket
from support.services import (
    ticket_member_reply,
    ticket_reply,
    ticket_transition,
    tickets_sla_sweep,
)
from tests.support.conftest import T0, at, open_ticket

pytestmark = pytest.mark.django_db


def events(event_type):
    return [
        m.payload["data"]
        for m in OutboxMessage.objects.filter(kind="event").order_by("created_at")
        if m.payload["type"] == event_type
    ]


def test_due_times_come_from_the_programme_policy_for_the_priority(side_a, policies):
    # when
    high = open_ticket(side_a)
    normal = open_ticket(side_a, category="other")
    # then
    assert (high.priority, high.first_response_due_at, high.resolution_due_at) == (
        "high",
        at(2),
        at(8),
    )
    assert (normal.priority, normal.first_response_due_at, normal.resolution_due_at) == (
        "normal",
        at(8),
        at(48),
    )


def test_without_a_policy_there_is_no_sla_and_no_breach(ticket_b):
    # when
    marked = tickets_sla_sweep(now=at(24 * 365))
    # then
    ticket_b.refresh_from_db()
    assert (ticket_b.first_response_due_at, ticket_b.resolution_due_at) == (None, None)
    assert marked == 0
    assert not ticket_b.is_breached


def test_a_sweep_before_the_due_time_marks_nothing(ticket_a):
    # when
    marked = tickets_sla_sweep(now=at(2) - (at(0, 1) - T0))
    # then
    assert marked == 0
    ticket_a.refresh_from_db()
    assert ticket_a.first_response_breached_at is None


def test_a_missed_first_response_is_a_breach_that_escalates_once(ticket_a):
    # when: the sweep runs at the due time, then again and again
    first = tickets_sla_sweep(now=at(2))
    second = tickets_sla_sweep(now=at(2, 1))
    third = tickets_sla_sweep(now=at(3))
    # then: one breach, priority raised one step, one event, one audit
    assert (first, second, third) == (1, 0, 0)
    ticket_a.refresh_from_db()
    assert ticket_a.first_response_breached_at == at(2)
    assert ticket_a.resolution_breached_at is None
    assert (ticket_a.priority, ticket_a.escalated) == ("urgent", True)
    [breached] = events("ticket.sla_breached")
    assert breached["breach"] == "first_response"
    assert breached["previous_priority"] == "high"
    assert breached["priority"] == "urgent"
    assert breached["due_at"] == at(2).isoformat()
    audit = AuditEvent.objects.get(action="ticket.sla_breach")
    assert audit.actor_label == "system"
    assert audit.changes["priority"] == ["high", "urgent"]


def test_the_resolution_breach_is_marked_separately_and_priority_is_capped(ticket_a):
    # given: answered in time, never resolved
    ticket_reply(ticket=ticket_a, body="We are looking into it.", actor=_agent(ticket_a), now=at(1))
    # when
    assert tickets_sla_sweep(now=at(7)) == 0
    assert tickets_sla_sweep(now=at(8)) == 1
    assert tickets_sla_sweep(now=at(9)) == 0
    # then
    ticket_a.refresh_from_db()
    assert ticket_a.first_response_breached_at is None
    assert ticket_a.resolution_breached_at == at(8)
    assert ticket_a.priority == "urgent"
    assert [e["breach"] for e in events("ticket.sla_breached")] == ["resolution"]


def _agent(ticket):
    from plum import roles
    from plum.actors import SYSTEM
    from plum.services.programmes import role_grant
    from tests.factories import UserFactory

    user = UserFactory()
    role_grant(user=user, role=roles.SUPPORT_AGENT, programme=ticket.programme, actor=SYSTEM)
    return user


def test_awaiting_the_member_pauses_the_clock_and_resuming_pushes_the_due_times(ticket_a):
    # given: answered after 1 h and put in the member's court for 10 h
    agent = _agent(ticket_a)
    ticket_reply(ticket=ticket_a, body="Which shop was it?", actor=agent, now=at(1))
    ticket_transition(ticket=ticket_a, status="awaiting_member", actor=agent, now=at(1))
    # when: the sweep runs long past the resolution due time while paused
    paused_sweep = tickets_sla_sweep(now=at(11))
    # and the member answers 10 h later
    ticket_member_reply(ticket=ticket_a, body="The one on Main St.", actor=agent, now=at(11))
    # then: not breached while paused; due time pushed by the 10 h pause
    ticket_a.refresh_from_db()
    assert paused_sweep == 0
    assert ticket_a.status == "in_progress"
    assert ticket_a.paused_at is None
    assert ticket_a.paused_seconds == 10 * 3600
    assert ticket_a.resolution_due_at == at(18)
    assert ticket_a.first_response_due_at == at(2)  # already met: not moved
    assert tickets_sla_sweep(now=at(17, 59)) == 0
    assert tickets_sla_sweep(now=at(18)) == 1


def test_a_paused_ticket_never_breaches(ticket_a):
    # given: straight to awaiting the member, never answered by an agent
    agent = _agent(ticket_a)
    ticket_transition(ticket=ticket_a, status="in_progress", actor=agent, now=at(0, 10))
    ticket_transition(ticket=ticket_a, status="awaiting_member", actor=agent, now=at(0, 30))
    # when
    marked = tickets_sla_sweep(now=at(1000))
    # then
    assert marked == 0
    ticket_a.refresh_from_db()
    assert not ticket_a.is_breached
    assert ticket_a.paused_at == at(0, 30)


def test_resolved_and_closed_tickets_never_breach(side_a, policies):
    # given
    agent = _agent(open_ticket(side_a))
    resolved, closed = open_ticket(side_a), open_ticket(side_a)
    ticket_transition(ticket=resolved, status="resolved", actor=agent, now=at(1))
    ticket_transition(ticket=closed, status="closed", actor=agent, now=at(1))
    # when
    marked = tickets_sla_sweep(now=at(100))
    # then: only the first (still open) ticket breached, both kinds
    assert marked == 2
    assert Ticket.objects.filter(resolution_breached_at__isnull=False).count() == 1


def test_the_first_reply_sets_first_responded_at_once(ticket_a):
    # given
    agent = _agent(ticket_a)
    # when
    ticket_reply(ticket=ticket_a, body="On it.", actor=agent, now=at(1))
    ticket_reply(ticket=ticket_a, body="Still on it.", actor=agent, now=at(3))
    # then
    ticket_a.refresh_from_db()
    assert ticket_a.first_responded_at == at(1)
    assert ticket_a.status == "in_progress"
    assert tickets_sla_sweep(now=at(3)) == 0
