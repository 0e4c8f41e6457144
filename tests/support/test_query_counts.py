"""Ticket lists cost a fixed number of queries, however many tickets they show: the portal's
queue page (with its counts per status), a ticket page with its messages, and the API list."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from support.services import ticket_note
from tests.support.conftest import open_ticket
from tests.support.test_api import LIST, keyed

pytestmark = pytest.mark.django_db


def _queries(get) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = get()
    assert response.status_code == 200, response.content[:300]
    return len(captured)


def test_the_queue_page_and_the_api_list_do_not_grow_with_the_tickets(
    as_user, agent_a, side_a, policies, make_api_client, programme
):
    # given: one ticket, pages warmed once
    client = as_user(agent_a)
    api = keyed(make_api_client, [programme])
    open_ticket(side_a)
    queue = lambda: client.get(reverse("ops:tickets_queue"), {"queue": "all"})  # noqa: E731
    listing = lambda: api.get(LIST)  # noqa: E731
    queue(), listing()
    one = (_queries(queue), _queries(listing))
    # when: ten more
    for _ in range(10):
        open_ticket(side_a)
    # then: the same queries, and all eleven shown
    assert (_queries(queue), _queries(listing)) == one
    assert len(listing().json()["results"]) == 11
    assert queue().context["page"].paginator.count == 11


def test_a_ticket_page_does_not_grow_with_its_messages(as_user, agent_a, side_a, policies):
    # given
    client = as_user(agent_a)
    ticket = open_ticket(side_a)
    page = lambda: client.get(reverse("ops:tickets_detail", args=[ticket.pk]))  # noqa: E731
    page()
    ticket_note(ticket=ticket, body="First look.", actor=agent_a)
    one = _queries(page)
    # when
    for n in range(10):
        ticket_note(ticket=ticket, body=f"Note {n}.", actor=agent_a)
    # then
    assert _queries(page) == one
