import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from plum.actors import SYSTEM
from plum.models import AuditEvent, AuditSeal, AuditSealItem
from plum.services.audit import audit_log, audit_seal, audit_verify


def _events(n, programme=None):
    return [
        audit_log(
            actor=SYSTEM,
            action="test.event",
            object_type="test",
            object_id=i,
            programme_id=programme.pk if programme else None,
            changes={"n": [i, i + 1]},
        )
        for i in range(n)
    ]


def _raw(sql, params=()):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.django_db
def test_audit_log_records_actor_context_and_a_content_hash(programme, make_user):
    # given
    from plum import context, roles

    user = make_user(roles.PROGRAMME_MANAGER, programme)
    token = context.bind(context.RequestContext(request_id="req-1", ip="10.1.2.3"))
    # when
    try:
        event = audit_log(
            actor=user,
            action="member.update",
            object_type="plum.member",
            object_id=7,
            programme_id=programme.pk,
            changes={"email": ["a@x.io", "b@x.io"]},
        )
    finally:
        context.reset(token)
    # then
    event.refresh_from_db()
    assert (event.actor_type, event.actor_user_id, event.actor_label) == (
        "user",
        user.pk,
        user.username,
    )
    assert (event.request_id, event.ip, event.programme_id) == ("req-1", "10.1.2.3", programme.pk)
    assert event.changes == {"email": ["a@x.io", "b@x.io"]}
    assert len(event.hash) == 64


@pytest.mark.django_db
def test_seal_chains_batches_in_id_order_and_verify_passes():
    # given
    _events(5)
    first = audit_seal(batch_size=3)
    second = audit_seal(batch_size=3)
    # when
    third = audit_seal(batch_size=3)
    checked, seals, problems = audit_verify()
    # then
    assert (first.event_count, second.event_count, third) == (3, 2, None)
    assert second.prev_hash == first.hash
    assert AuditSealItem.objects.count() == 5
    assert (checked, seals, problems) == (5, 2, [])


@pytest.mark.django_db
def test_verify_audit_command_exits_zero_on_an_intact_log(capsys):
    # given
    _events(3)
    audit_seal()
    # when
    call_command("verify_audit")
    # then
    assert "Audit log intact: 3 events, 1 seals." in capsys.readouterr().out


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE plum_auditevent SET action = 'forged'",
        "DELETE FROM plum_auditevent",
        "TRUNCATE plum_auditevent",
        "UPDATE plum_auditsealitem SET event_hash = 'x'",
        "DELETE FROM plum_auditseal",
    ],
)
def test_trigger_rejects_changes_to_audit_tables(statement):
    # given
    _events(2)
    audit_seal()
    _raw("SET LOCAL plum.allow_truncate = 'off'")
    # when / then
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        _raw(statement)
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "test.event",
        "test.event",
    ]
    assert AuditSeal.objects.count() == 1


def _tamper(sql, params=()):
    """Alter the log the way an attacker with table-owner rights would: triggers off."""
    _raw("ALTER TABLE plum_auditevent DISABLE TRIGGER USER")
    try:
        _raw(sql, params)
    finally:
        _raw("ALTER TABLE plum_auditevent ENABLE TRIGGER USER")


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("sealed", [True, False])
def test_verify_audit_names_an_event_altered_through_raw_sql(sealed):
    # given
    events = _events(4)
    if sealed:
        audit_seal()
    target = events[2]
    # when
    _tamper("UPDATE plum_auditevent SET changes = '{\"n\": [0, 999]}' WHERE id = %s", [target.pk])
    # then
    with pytest.raises(CommandError, match=f"event {target.pk} was altered"):
        call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db
def test_verify_audit_catches_content_and_hash_rewritten_together():
    # given: the attacker recomputes the event's own hash, but the seal still holds the old one
    from plum.services.audit import event_content_hash

    events = _events(3)
    audit_seal()
    target = AuditEvent.objects.get(pk=events[1].pk)
    target.action = "forged"
    forged_hash = event_content_hash(target)
    # when
    _tamper(
        "UPDATE plum_auditevent SET action = 'forged', hash = %s WHERE id = %s",
        [forged_hash, target.pk],
    )
    # then
    with pytest.raises(CommandError, match=f"event {target.pk} was altered"):
        call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db
def test_verify_audit_names_a_deleted_sealed_event():
    # given
    events = _events(3)
    audit_seal()
    # when
    _tamper("DELETE FROM plum_auditevent WHERE id = %s", [events[0].pk])
    # then
    with pytest.raises(CommandError, match=f"event {events[0].pk} is missing"):
        call_command("verify_audit")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_that_commits_after_a_higher_id_was_sealed_is_sealed_next():
    # given: a transaction takes a lower id and commits only after a seal of a higher id
    import threading

    inserted, release = threading.Event(), threading.Event()
    late_ids = []

    def slow_writer():
        try:
            with transaction.atomic():
                late_ids.append(_events(1)[0].pk)
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    inserted.wait(10)
    early = _events(1)[0]
    first = audit_seal()
    release.set()
    writer.join()
    # when
    second = audit_seal()
    # then
    assert late_ids[0] < early.pk
    assert list(first.items.values_list("event_id", flat=True)) == [early.pk]
    assert list(second.items.values_list("event_id", flat=True)) == late_ids
    assert audit_verify() == (2, 2, [])


@pytest.mark.django_db
def test_an_audit_batch_writes_its_events_in_one_insert_in_order_with_their_hashes():
    # given
    from django.test.utils import CaptureQueriesContext

    from plum.services.audit import audit_batch, event_content_hash

    # when
    with transaction.atomic(), CaptureQueriesContext(connection) as queries, audit_batch():
        events = _events(3)
        assert AuditEvent.objects.count() == 0  # not written before the block ends
    # then: one INSERT, the events in the order recorded, each with its id and its hash
    inserts = [q["sql"] for q in queries.captured_queries if "plum_auditevent" in q["sql"]]
    assert len([s for s in inserts if s.startswith("INSERT")]) == 1
    stored = list(AuditEvent.objects.order_by("id"))
    assert [e.pk for e in stored] == [e.pk for e in events]
    assert [e.object_id for e in stored] == ["0", "1", "2"]
    assert all(event_content_hash(e) == e.hash for e in stored)
    assert audit_verify()[2] == []


@pytest.mark.django_db
def test_an_audit_batch_that_fails_writes_nothing_and_a_savepoint_inside_it_writes_at_once():
    # given
    from plum.services.audit import audit_batch

    # when: an error ends the block
    with pytest.raises(RuntimeError), transaction.atomic(), audit_batch():
        _events(2)
        raise RuntimeError("refused")
    # then
    assert AuditEvent.objects.count() == 0
    # when: an event recorded inside a savepoint that rolls back, then one outside it
    with transaction.atomic(), audit_batch():
        try:
            with transaction.atomic():
                _events(1)
                assert AuditEvent.objects.count() == 1  # written at once, inside the savepoint
                raise RuntimeError("rolled back")
        except RuntimeError:
            pass
        _events(1)
    # then: only the event outside the rolled-back savepoint
    assert AuditEvent.objects.count() == 1
