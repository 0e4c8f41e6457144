"""plum.sql: hand-written statements with the models' own names, and deferred writes."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from plum import sql as raw
from plum.actors import SYSTEM
from plum.models import AuditEvent, OutboxMessage
from plum.services.audit import audit_batch, audit_log, event_content_hash
from plum.services.outbox import outbox_batch, outbox_enqueue

EMAIL = {"to": ["asha@example.com"], "subject": "Your reward", "text": "Code ABCD-1234"}


def _event(n):
    return audit_log(actor=SYSTEM, action="test.event", object_type="test", object_id=n)


@pytest.mark.django_db
def test_deferred_writes_run_as_one_statement_at_the_end_of_the_block():
    # when: audit events and outbox messages written inside the block
    with (
        transaction.atomic(),
        CaptureQueriesContext(connection) as queries,
        raw.deferred_writes(),
    ):
        with audit_batch(), outbox_batch():
            events = [_event(0), _event(1)]
            message = outbox_enqueue(kind="email", payload=EMAIL)
        assert not AuditEvent.objects.exists() and not OutboxMessage.objects.exists()
    # then: one statement wrote both, and the events have their ids, in order, and hashes
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith("WITH ")
    stored = list(AuditEvent.objects.order_by("id"))
    assert [e.pk for e in stored] == [e.pk for e in events] and events[0].pk < events[1].pk
    assert all(event_content_hash(e) == e.hash for e in stored)
    assert OutboxMessage.objects.get().pk == message.pk


@pytest.mark.django_db
def test_deferred_writes_write_nothing_on_an_error_and_at_once_inside_a_savepoint():
    # when: an error ends the block
    with pytest.raises(RuntimeError), transaction.atomic(), raw.deferred_writes(), audit_batch():
        _event(0)
        raise RuntimeError("refused")
    # then
    assert not AuditEvent.objects.exists()
    # when: a write inside a savepoint opened in the block
    with transaction.atomic(), raw.deferred_writes(), audit_batch(), transaction.atomic():
        _event(1)
        assert AuditEvent.objects.count() == 1
    assert AuditEvent.objects.count() == 1


@pytest.mark.django_db
def test_rows_read_by_hand_are_what_the_orm_reads(programme):
    # given
    from campaigns.models import Reward
    from tests.campaigns.builders import make_campaign

    campaign = make_campaign(programme)
    reward = campaign.reward
    Reward.objects.filter(pk=reward.pk).update(denominations=[10, 25])
    # when
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {raw.select_list(Reward)} FROM {raw.table(Reward)} WHERE id = %s",  # noqa: S608
            [reward.pk],
        )
        by_hand = raw.from_row(Reward, raw.attnames(Reward), cursor.fetchone())
    by_orm = Reward.objects.get(pk=reward.pk)
    # then: every field, converted (the JSON field parsed), and the instance saved-state
    for name in raw.attnames(Reward):
        assert getattr(by_hand, name) == getattr(by_orm, name), name
    assert by_hand.denominations == [10, 25]
    assert not by_hand._state.adding and by_hand._state.db == "default"
