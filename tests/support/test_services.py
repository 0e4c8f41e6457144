"""Ticket services end to end: a reply reaches the member's mailbox through the real outbox
and SMTP path; notes never reach the member (storefront, e-mail); the member answers from the
storefront; reopening within the window only; refusals change nothing; messages are
append-only in the database itself."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client
from django.urls import reverse

from plum.actors import SYSTEM
from plum.errors import InvalidInputError, InvalidTransitionError
from plum.models import AuditEvent, OutboxMessage
from plum.services.outbox import outbox_sweep
from plum.services.programmes import member_link_user
from support.errors import TicketClosedError, TicketReopenWindowClosedError
from support.models import SlaPolicy, Ticket, TicketMessage
from support.services import (
    sla_policy_set,
    ticket_close,
    ticket_member_reply,
    ticket_note,
    ticket_reopen,
    ticket_reply,
    ticket_transition,
)
from tests.factories import UserFactory
from tests.support.conftest import at

pytestmark = pytest.mark.django_db


def state():
    return {
        "tickets": list(Ticket.objects.order_by("pk").values()),
        "messages": TicketMessage.objects.count(),
        "audit": AuditEvent.objects.count(),
        "outbox": OutboxMessage.objects.count(),
        "policies": list(SlaPolicy.objects.order_by("pk").values()),
    }


@pytest.fixture
def member_browser(side_a):
    user = UserFactory(username="asha", email=side_a.member.email)
    member_link_user(member=side_a.member, user=user, actor=SYSTEM)
    client = Client()
    client.force_login(user)
    return client


def test_a_reply_reaches_the_members_mailbox_and_a_note_does_not(
    as_user, agent_a, ticket_a, smtp_server
):
    # given: an agent replies and notes through the portal
    client = as_user(agent_a)
    client.post(reverse("ops:tickets_note", args=[ticket_a.pk]), {"note-body": "POS says ok."})
    client.post(
        reverse("ops:tickets_reply", args=[ticket_a.pk]),
        {"reply-body": "We sent your code again."},
    )
    # when: the outbox delivers what is due (the e-mail and the events)
    outbox_sweep()
    # then: one e-mail about the ticket (the order's voucher e-mail goes out too), to the
    # member, with the reply and not the note
    [mail] = [m for m in smtp_server.messages if "problem report" in m["Subject"]]
    assert mail["To"] == "asha@example.com"
    assert f"#{ticket_a.pk}" in mail["Subject"]
    body = mail.get_payload(decode=True).decode() if not mail.is_multipart() else str(mail)
    assert "We sent your code again." in body
    assert "POS says ok." not in body
    email = OutboxMessage.objects.get(kind="email", payload__subject=mail["Subject"])
    assert (email.status, email.programme_id) == ("sent", ticket_a.programme_id)
    audit = AuditEvent.objects.get(action="ticket.reply")
    assert audit.actor_label == agent_a.username
    assert audit.changes["emailed"] == [None, True]


def test_a_reply_to_a_member_without_e_mail_is_stored_and_not_mailed(agent_a, side_a, ticket_a):
    # given
    type(side_a.member).objects.filter(pk=side_a.member.pk).update(email="")
    # when
    ticket_reply(ticket=ticket_a, body="Please call us.", actor=agent_a)
    # then
    assert TicketMessage.objects.filter(kind="reply").count() == 1
    assert not OutboxMessage.objects.filter(kind="email").exists()


def test_the_member_sees_replies_not_notes_and_answers(member_browser, agent_a, ticket_a):
    # given: waiting for the member
    ticket_reply(ticket=ticket_a, body="Which shop was it?", actor=agent_a, now=at(1))
    ticket_note(ticket=ticket_a, body="Suspect fraud, check later.", actor=agent_a, now=at(1))
    ticket_transition(ticket=ticket_a, status="awaiting_member", actor=agent_a, now=at(1))
    url = reverse("store_support:ticket", args=[ticket_a.pk])
    # when
    page = member_browser.get(url).content.decode()
    answer = member_browser.post(url, {"body": "The one on Main St."})
    # then
    assert "Which shop was it?" in page
    assert "Suspect fraud" not in page
    assert answer.status_code == 302
    ticket_a.refresh_from_db()
    assert ticket_a.status == "in_progress"
    assert list(ticket_a.messages.values_list("kind", flat=True)) == [
        "reply",
        "note",
        "member_reply",
    ]
    assert "Suspect fraud" not in member_browser.get(url).content.decode()


def test_a_member_cannot_open_another_members_ticket(member_browser, ticket_b):
    before = state()
    url = reverse("store_support:ticket", args=[ticket_b.pk])
    assert member_browser.get(url).status_code == 404
    assert member_browser.post(url, {"body": "hi"}).status_code == 404
    assert state() == before


def test_an_agent_is_not_a_member_on_the_storefront(as_user, agent_a, ticket_a):
    response = as_user(agent_a).get(reverse("store_support:ticket", args=[ticket_a.pk]))
    assert response.status_code == 403


def test_an_empty_member_answer_is_a_400_and_nothing_changes(member_browser, ticket_a):
    before = state()
    response = member_browser.post(
        reverse("store_support:ticket", args=[ticket_a.pk]), {"body": " "}
    )
    assert response.status_code == 400
    assert state() == before


def test_reopen_within_the_window_only(agent_a, side_a, policies, settings):
    # given
    from tests.support.conftest import open_ticket

    settings.SUPPORT_REOPEN_DAYS = 7
    recent, old = open_ticket(side_a), open_ticket(side_a)
    ticket_transition(ticket=recent, status="resolved", actor=agent_a, now=at(1))
    ticket_close(ticket=recent, actor=agent_a, now=at(2))
    ticket_transition(ticket=old, status="resolved", actor=agent_a, now=at(1))
    # when
    reopened = ticket_reopen(ticket=recent, actor=agent_a, now=at(2) + timedelta(days=7))
    before = state()
    with pytest.raises(TicketReopenWindowClosedError):
        ticket_reopen(ticket=old, actor=agent_a, now=at(1) + timedelta(days=7, seconds=1))
    with pytest.raises(TicketReopenWindowClosedError):
        ticket_member_reply(
            ticket=old, body="Still broken", actor=agent_a, now=at(1) + timedelta(days=8)
        )
    # then
    assert state() == before
    assert (reopened.status, reopened.closed_at, reopened.resolved_at) == ("open", None, None)
    # the clock stopped while it was resolved: due times pushed by the 7 days + 1 h
    assert reopened.resolution_due_at == at(8) + timedelta(days=7, hours=1)
    assert AuditEvent.objects.filter(action="ticket.reopen").count() == 1


def test_refusals_change_nothing(agent_a, ticket_a):
    # given
    ticket_close(ticket=ticket_a, actor=agent_a, now=at(1))
    ticket_a.refresh_from_db()
    before = state()
    # when / then
    with pytest.raises(TicketClosedError):
        ticket_reply(ticket=ticket_a, body="Hello", actor=agent_a)
    with pytest.raises(InvalidTransitionError):
        ticket_transition(ticket=ticket_a, status="resolved", actor=agent_a)
    with pytest.raises(InvalidInputError):
        ticket_transition(ticket=ticket_a, status="gone", actor=agent_a)
    with pytest.raises(InvalidInputError):
        ticket_note(ticket=ticket_a, body="x" * 8001, actor=agent_a)
    with pytest.raises(InvalidInputError):
        sla_policy_set(
            programme=ticket_a.programme,
            priority="high",
            first_response_hours=0,
            resolution_hours=4,
            actor=agent_a,
        )
    with pytest.raises(InvalidInputError):
        sla_policy_set(
            programme=ticket_a.programme,
            priority="high",
            first_response_hours=8,
            resolution_hours=4,
            actor=agent_a,
        )
    assert state() == before


@pytest.mark.postgres
def test_messages_are_append_only_in_the_database(agent_a, ticket_a):
    # given
    message = ticket_note(ticket=ticket_a, body="First thought.", actor=agent_a)
    # when / then: UPDATE and DELETE are refused by the trigger, even through the ORM
    for statement in (
        lambda: TicketMessage.objects.filter(pk=message.pk).update(body="Rewritten"),
        lambda: TicketMessage.objects.filter(pk=message.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            statement()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM support_ticketmessage")
    message.refresh_from_db()
    assert message.body == "First thought."


@pytest.mark.postgres
def test_sla_policy_hours_are_checked_by_the_database(programme):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), transaction.atomic():
        SlaPolicy.objects.create(
            programme=programme, priority="low", first_response_hours=0, resolution_hours=1
        )
    sla_policy_set(
        programme=programme,
        priority="low",
        first_response_hours=1,
        resolution_hours=2,
        actor=SYSTEM,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        SlaPolicy.objects.create(
            programme=programme, priority="low", first_response_hours=1, resolution_hours=2
        )


def test_anonymous_is_sent_to_the_storefront_sign_in(ticket_a):
    before = state()
    url = reverse("store_support:ticket", args=[ticket_a.pk])
    for response in (Client().get(url), Client().post(url, {"body": "hi"})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("store:login"))
    assert state() == before
