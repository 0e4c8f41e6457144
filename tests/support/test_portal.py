"""The ticket pages of the ops portal: the permission matrix for every page and action
(anonymous → sign-in; a member → 403; an agent of programme B → 404 with nothing changed; an
agent or a manager of A → in), the queues and counts, and the actions' refusals (a specific
4xx, nothing changed)."""

import pytest
from django.urls import reverse

from plum.models import AuditEvent, OutboxMessage
from support.models import Ticket, TicketMessage
from support.services import ticket_assign, ticket_transition, tickets_sla_sweep
from tests.support.conftest import at, open_ticket

pytestmark = pytest.mark.django_db

ACTIONS = {
    "queue": ("get", lambda t, s: reverse("ops:tickets_queue") + f"?queue=all&t={t.pk}", {}),
    "detail": ("get", lambda t, s: reverse("ops:tickets_detail", args=[t.pk]), {}),
    "assign": ("post", lambda t, s: reverse("ops:tickets_assign", args=[t.pk]), {"assignee": "me"}),
    "status": (
        "post",
        lambda t, s: reverse("ops:tickets_status", args=[t.pk]),
        {"status": "in_progress"},
    ),
    "reply": (
        "post",
        lambda t, s: reverse("ops:tickets_reply", args=[t.pk]),
        {"reply-body": "We are on it."},
    ),
    "note": (
        "post",
        lambda t, s: reverse("ops:tickets_note", args=[t.pk]),
        {"note-body": "Checked the POS log."},
    ),
    "new for member": (
        "post",
        lambda t, s: reverse("ops:tickets_new") + f"?member={s.member.pk}",
        {"category": "other", "description": "Called the hotline."},
    ),
    "new for order": (
        "post",
        lambda t, s: reverse("ops:tickets_new") + f"?order={s.order.booking_id}",
        {"category": "not_received", "description": "Called the hotline."},
    ),
}
WRITES = [name for name, (method, _, _) in ACTIONS.items() if method == "post"]


def state():
    return {
        "tickets": list(Ticket.objects.order_by("pk").values()),
        "messages": TicketMessage.objects.count(),
        "audit": AuditEvent.objects.count(),
        "outbox": OutboxMessage.objects.count(),
    }


def call(client, name, ticket, side):
    method, url, data = ACTIONS[name]
    return getattr(client, method)(url(ticket, side), data)


@pytest.mark.parametrize("name", ACTIONS)
def test_anonymous_is_sent_to_sign_in_and_nothing_changes(client, ticket_a, side_a, name):
    # given
    before = state()
    # when
    response = call(client, name, ticket_a, side_a)
    # then
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('ops:login')}?next=%2Fops%2Ftickets%2F")
    assert state() == before


@pytest.mark.parametrize("name", ACTIONS)
def test_a_member_gets_the_403_page_and_nothing_changes(
    as_user, member_user, ticket_a, side_a, name
):
    # given
    client = as_user(member_user)
    before = state()
    # when
    response = call(client, name, ticket_a, side_a)
    # then
    assert response.status_code == 403
    assert state() == before


@pytest.mark.parametrize("name", [n for n in ACTIONS if n != "queue"])
def test_an_agent_of_another_programme_gets_404_and_nothing_changes(
    as_user, agent_b, ticket_a, ticket_b, side_a, name
):
    # given
    client = as_user(agent_b)
    before = state()
    # when
    response = call(client, name, ticket_a, side_a)
    # then
    assert response.status_code == 404
    assert side_a.member.external_id.encode() not in response.content
    assert state() == before


def test_an_agent_of_another_programme_does_not_see_the_ticket_in_any_queue(
    as_user, agent_b, ticket_a, ticket_b
):
    # when
    pages = [
        as_user(agent_b).get(reverse("ops:tickets_queue"), {"queue": q})
        for q in ("mine", "unassigned", "breaching", "breached", "open", "all")
    ]
    # then
    for page in pages:
        assert page.status_code == 200
        ids = [t.pk for t in page.context["page"].object_list]
        assert ticket_a.pk not in ids
    assert pages[-1].context["counts"]["open"] == 1  # B's own ticket only


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
@pytest.mark.parametrize("name", WRITES)
def test_an_agent_or_manager_of_the_programme_acts(request, as_user, ticket_a, side_a, user, name):
    # given
    client = as_user(request.getfixturevalue(user))
    before = AuditEvent.objects.count()
    # when
    response = call(client, name, ticket_a, side_a)
    # then: redirected to the ticket, one more audited change at least
    assert response.status_code == 302, response.content.decode()[:500]
    assert response["Location"].startswith("/ops/tickets/")
    assert AuditEvent.objects.count() > before


@pytest.mark.parametrize("user", ["agent_a", "manager_a"])
def test_an_agent_or_manager_of_the_programme_opens_the_pages(
    request, as_user, ticket_a, ticket_b, side_a, user
):
    # given
    client = as_user(request.getfixturevalue(user))
    # when
    detail = call(client, "detail", ticket_a, side_a)
    queue = call(client, "queue", ticket_a, side_a)
    new = client.get(reverse("ops:tickets_new"), {"member": side_a.member.pk})
    # then
    assert (detail.status_code, queue.status_code, new.status_code) == (200, 200, 200)
    assert [t.pk for t in queue.context["page"].object_list] == [ticket_a.pk]


def test_the_queues_and_counts(as_user, agent_a, side_a, policies, ticket_b):
    # given: mine (assigned), unassigned, breaching soon, breached, resolved
    mine = open_ticket(side_a, now=at(0))
    ticket_assign(ticket=mine, assignee=agent_a, actor=agent_a)
    soon = open_ticket(side_a, category="other")  # normal: answer within 8 h
    breached = open_ticket(side_a)
    resolved = open_ticket(side_a)
    ticket_transition(ticket=resolved, status="resolved", actor=agent_a, now=at(1))
    tickets_sla_sweep(now=at(3))  # high tickets (mine, breached) miss their 2 h first response
    ticket_transition(ticket=breached, status="in_progress", actor=agent_a, now=at(3))
    client = as_user(agent_a)

    def ids(queue):
        page = client.get(reverse("ops:tickets_queue"), {"queue": queue})
        return page, sorted(t.pk for t in page.context["page"].object_list)

    # when / then
    assert ids("mine")[1] == [mine.pk]
    assert ids("unassigned")[1] == sorted([soon.pk, breached.pk])
    assert ids("breached")[1] == sorted([mine.pk, breached.pk])
    page, _ = ids("all")
    assert page.context["counts"] == {
        "open": 2,
        "in_progress": 1,
        "awaiting_member": 0,
        "resolved": 1,
        "closed": 0,
    }
    assert 'data-testid="count-resolved">1<' in page.content.decode()


def test_breaching_soon_lists_running_tickets_due_within_the_window(
    as_user, agent_a, side_a, policies, settings
):
    # given: a high ticket (first response due in 2 h) and a normal one (8 h)
    settings.SUPPORT_BREACHING_SOON_HOURS = 4
    from django.utils import timezone

    now = timezone.now()
    high = open_ticket(side_a, now=now)
    open_ticket(side_a, category="other", now=now)
    # when
    page = as_user(agent_a).get(reverse("ops:tickets_queue"), {"queue": "breaching"})
    # then
    assert [t.pk for t in page.context["page"].object_list] == [high.pk]


def test_a_bad_transition_is_a_409_with_the_reason_and_nothing_changes(as_user, agent_a, ticket_a):
    # given
    client = as_user(agent_a)
    before = state()
    # when: open → awaiting member is not in the table; a status that does not exist
    bad = client.post(
        reverse("ops:tickets_status", args=[ticket_a.pk]), {"status": "awaiting_member"}
    )
    unknown = client.post(reverse("ops:tickets_status", args=[ticket_a.pk]), {"status": "done"})
    # then
    assert bad.status_code == 409
    assert "invalid_transition" in bad.content.decode()
    assert unknown.status_code == 400
    assert state() == before


def test_an_empty_reply_or_note_is_a_400_and_nothing_changes(as_user, agent_a, ticket_a):
    # given
    client = as_user(agent_a)
    before = state()
    # when
    reply = client.post(reverse("ops:tickets_reply", args=[ticket_a.pk]), {"reply-body": "  "})
    note = client.post(reverse("ops:tickets_note", args=[ticket_a.pk]), {"note-body": ""})
    # then
    assert (reply.status_code, note.status_code) == (400, 400)
    assert state() == before


def test_assigning_to_an_agent_of_another_programme_is_refused(as_user, agent_a, agent_b, ticket_a):
    # given
    client = as_user(agent_a)
    before = state()
    # when
    response = client.post(
        reverse("ops:tickets_assign", args=[ticket_a.pk]), {"assignee": str(agent_b.pk)}
    )
    junk = [
        client.post(reverse("ops:tickets_assign", args=[ticket_a.pk]), {"assignee": raw})
        for raw in ["x", "\u00b2", "\u0663", "9" * 30]  # superscript two, Arabic-Indic three
    ]
    odd_member = client.get(reverse("ops:tickets_new"), {"member": "\u00b2"})
    huge_member = client.get(reverse("ops:tickets_new"), {"member": "9" * 30})
    # then
    assert response.status_code == 400
    assert "ticket_assignee_invalid" in response.content.decode()
    assert [r.status_code for r in junk] == [400] * 4
    assert odd_member.status_code < 500 and huge_member.status_code < 500
    assert state() == before


def test_assign_to_another_agent_of_the_programme(as_user, agent_a, manager_a, ticket_a):
    # given: the manager's page lists agent_a in the assignee choices
    client = as_user(manager_a)
    page = client.get(reverse("ops:tickets_detail", args=[ticket_a.pk]))
    assert agent_a in page.context["agents"]
    # when
    response = client.post(
        reverse("ops:tickets_assign", args=[ticket_a.pk]), {"assignee": str(agent_a.pk)}
    )
    # then
    assert response.status_code == 302
    ticket_a.refresh_from_db()
    assert ticket_a.assignee == agent_a
    audit = AuditEvent.objects.get(action="ticket.assign")
    assert (audit.actor_label, audit.changes) == (
        manager_a.username,
        {"assignee": [None, agent_a.username]},
    )


def test_notes_are_on_the_agent_page_and_the_order_and_member_pages_link_the_ticket(
    as_user, agent_a, ticket_a, side_a
):
    # given
    client = as_user(agent_a)
    client.post(reverse("ops:tickets_note", args=[ticket_a.pk]), {"note-body": "POS log: ok"})
    # when
    detail = client.get(reverse("ops:tickets_detail", args=[ticket_a.pk])).content.decode()
    order = client.get(reverse("ops:order", args=[side_a.order.booking_id])).content.decode()
    member = client.get(reverse("ops:member", args=[side_a.member.pk])).content.decode()
    # then
    assert "POS log: ok" in detail
    link = reverse("ops:tickets_detail", args=[ticket_a.pk])
    assert link in order and link in member


def test_a_new_ticket_for_an_order_of_another_member_is_a_404(as_user, agent_a, side_a, programme):
    # given: another member of the same programme
    from tests.factories import MemberFactory

    other = MemberFactory(programme=programme)
    before = state()
    # when
    response = as_user(agent_a).post(
        reverse("ops:tickets_new") + f"?member={other.pk}&order={side_a.order.booking_id}",
        {"category": "other", "description": "x"},
    )
    # then
    assert response.status_code == 404
    assert state() == before
