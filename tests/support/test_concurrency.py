"""Races on Postgres with real parallel connections (the pattern of
tests/orders/test_order_concurrency.py): parallel SLA sweeps mark and escalate each breach once;
parallel status changes of one ticket have one winner."""

import pytest

from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from support.models import SlaPolicy, Ticket
from support.services import (
    sla_policy_set,
    ticket_assign,
    ticket_reply,
    ticket_transition,
    tickets_sla_sweep,
)
from tests.orders.test_order_concurrency import run_in_parallel
from tests.support.conftest import at, open_ticket

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def breach_events():
    return [
        m.payload["data"]
        for m in OutboxMessage.objects.filter(kind="event")
        if m.payload["type"] == "ticket.sla_breached"
    ]


def test_parallel_sweeps_escalate_each_breach_once(side_a, policies):
    # given: 20 high tickets past their first response (2 h) and resolution (8 h)
    tickets = [open_ticket(side_a) for _ in range(20)]
    # when: 8 sweeps at once
    results = run_in_parallel([lambda: tickets_sla_sweep(now=at(9)) for _ in range(8)], workers=8)
    # then: 40 breaches marked in all, each once; priority raised two steps at most (capped)
    assert [r for r in results if not isinstance(r, int)] == []
    assert sum(results) == 40
    assert len(breach_events()) == 40
    assert AuditEvent.objects.filter(action="ticket.sla_breach").count() == 40
    assert set(Ticket.objects.values_list("priority", "escalated")) == {("urgent", True)}
    per_ticket = {}
    for event in breach_events():
        per_ticket.setdefault(event["ticket_id"], []).append(event["breach"])
    assert {k: sorted(v) for k, v in per_ticket.items()} == {
        t.pk: ["first_response", "resolution"] for t in tickets
    }
    # and each ticket's two events name the priority each breach really raised: high, then
    # urgent (a stale read would report "high" twice)
    previous = {}
    for event in breach_events():
        previous.setdefault(event["ticket_id"], []).append(event["previous_priority"])
    assert {k: sorted(v) for k, v in previous.items()} == {
        t.pk: ["high", "urgent"] for t in tickets
    }
    assert tickets_sla_sweep(now=at(10)) == 0


def test_parallel_status_changes_have_one_winner(side_a, policies, agent_a):
    # given: a ticket in progress
    ticket = open_ticket(side_a)
    ticket_transition(ticket=ticket, status="in_progress", actor=agent_a, now=at(0, 5))
    # when: 16 agents try to resolve it at once
    results = run_in_parallel(
        [
            lambda: ticket_transition(ticket=ticket, status="resolved", actor=agent_a, now=at(1))
            for _ in range(16)
        ],
        workers=16,
    )
    # then
    winners = [r for r in results if isinstance(r, Ticket)]
    refused = [r for r in results if isinstance(r, InvalidTransitionError)]
    assert (len(winners), len(refused)) == (1, 15)
    ticket.refresh_from_db()
    assert (ticket.status, ticket.resolved_at) == ("resolved", at(1))
    assert AuditEvent.objects.filter(action="ticket.transition").count() == 2


def test_a_reply_racing_the_first_response_sweep_is_one_or_the_other(side_a, policies, agent_a):
    # given: 10 tickets at their first-response due time
    tickets = [open_ticket(side_a) for _ in range(10)]
    for ticket in tickets:
        ticket_assign(ticket=ticket, assignee=agent_a, actor=agent_a)
    # when: the agent answers each while a sweep runs at the same instant
    calls = [lambda: tickets_sla_sweep(now=at(2))] + [
        (lambda t=t: ticket_reply(ticket=t, body="On it.", actor=agent_a, now=at(2)))
        for t in tickets
    ]
    results = run_in_parallel(calls, workers=11)
    # then: nothing failed; a ticket is breached only if the reply was not there first
    assert [r for r in results if isinstance(r, Exception)] == []
    for ticket in Ticket.objects.all():
        if ticket.first_response_breached_at is not None:
            assert ticket.priority == "urgent"
        else:
            assert ticket.priority == "high"
        assert ticket.first_responded_at == at(2)


def test_parallel_first_saves_of_one_policy_leave_one_row_and_no_error(programme):
    # given: a programme with no policy for "low"
    # when: 8 managers save it at once, each with its own hours
    results = run_in_parallel(
        [
            (
                lambda n=n: sla_policy_set(
                    programme=programme,
                    priority="low",
                    first_response_hours=n,
                    resolution_hours=24,
                    actor=SYSTEM,
                )
            )
            for n in range(1, 9)
        ],
        workers=8,
    )
    # then: nobody failed, one row holds the last writer's hours, each save audited
    assert [r for r in results if isinstance(r, Exception)] == []
    policy = SlaPolicy.objects.get(programme=programme, priority="low")
    assert policy.first_response_hours in range(1, 9)
    assert AuditEvent.objects.filter(action="sla_policy.set").count() == 8
