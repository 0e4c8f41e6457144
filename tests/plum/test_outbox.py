import subprocess
import sys
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from plum.models import AuditEvent, OutboxMessage
from plum.senders import send_email
from plum.services.outbox import (
    backoff_seconds,
    outbox_deliver,
    outbox_enqueue,
    outbox_retry,
    outbox_sweep,
    register_sender,
)

EMAIL = {"to": ["asha@example.com"], "subject": "Your reward", "text": "Code ABCD-1234"}


def _enqueue(django_capture_on_commit_callbacks, payload=EMAIL, kind="email"):
    # Capture the on-commit publish without running it: these tests drive delivery themselves.
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        message = outbox_enqueue(kind=kind, payload=payload)
    assert len(callbacks) == 1
    return message


@pytest.mark.django_db
def test_enqueue_writes_nothing_when_the_transaction_rolls_back(django_capture_on_commit_callbacks):
    # given / when
    with (
        django_capture_on_commit_callbacks(execute=False) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        outbox_enqueue(kind="email", payload=EMAIL)
        raise RuntimeError("the change that caused it failed")
    # then
    assert OutboxMessage.objects.count() == 0
    assert callbacks == []


@pytest.mark.django_db
def test_enqueue_refuses_a_kind_without_a_sender():
    with pytest.raises(ValueError, match="No outbox sender"), transaction.atomic():
        outbox_enqueue(kind="carrier-pigeon", payload={})
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_deliver_sends_an_email_once_and_is_idempotent(
    smtp_server, django_capture_on_commit_callbacks
):
    # given
    message = _enqueue(django_capture_on_commit_callbacks)
    # when
    first = outbox_deliver(message_id=message.pk)
    second = outbox_deliver(message_id=message.pk)
    # then
    message.refresh_from_db()
    assert (first.pk, second) == (message.pk, None)
    assert (message.status, message.attempts, message.last_error) == ("sent", 1, "")
    assert message.sent_at is not None
    assert len(smtp_server.messages) == 1
    received = smtp_server.messages[0]
    assert (received["To"], received["Subject"]) == ("asha@example.com", "Your reward")
    assert received["X-Plum-Message-Id"] == str(message.pk)


@pytest.mark.django_db
def test_transient_failure_is_retried_later_with_backoff(
    smtp_server, django_capture_on_commit_callbacks, settings
):
    # given
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 60
    smtp_server.recorder.data_replies = ["451 4.3.0 try again later"]
    message = _enqueue(django_capture_on_commit_callbacks)
    before = timezone.now()
    # when
    outbox_deliver(message_id=message.pk)
    # then: pending, not due yet, nothing received
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)
    assert "451" in message.last_error
    assert before + timedelta(seconds=30) <= message.next_attempt_at
    assert message.next_attempt_at <= timezone.now() + timedelta(seconds=60)
    assert outbox_sweep() == 0
    assert smtp_server.messages == []
    # when it is due again
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    assert outbox_sweep() == 1
    # then
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_permanent_failure_stops_at_once_and_runs_the_failure_hook(
    smtp_server, django_capture_on_commit_callbacks
):
    # given
    failed = []
    register_sender("test.flagging-email", on_failure=failed.append)(send_email)
    smtp_server.recorder.rcpt_reply = "550 5.1.1 no such user"
    message = _enqueue(django_capture_on_commit_callbacks, kind="test.flagging-email")
    # when
    outbox_deliver(message_id=message.pk)
    # then
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 1)
    assert "Recipient refused" in message.last_error
    assert [m.pk for m in failed] == [message.pk]
    assert outbox_sweep() == 0


@pytest.mark.django_db
def test_a_message_is_dead_after_its_attempts_run_out(
    smtp_server, django_capture_on_commit_callbacks, settings
):
    # given
    settings.OUTBOX_MAX_ATTEMPTS = 2
    smtp_server.recorder.data_replies = ["451 busy", "451 busy"]
    message = _enqueue(django_capture_on_commit_callbacks)
    # when
    outbox_deliver(message_id=message.pk)
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    outbox_deliver(message_id=message.pk)
    # then
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("dead", 2)
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_retry_makes_a_dead_message_due_again_and_is_audited(
    smtp_server, django_capture_on_commit_callbacks, make_user
):
    # given
    from plum import roles

    admin = make_user(roles.PLATFORM_ADMIN)
    message = _enqueue(django_capture_on_commit_callbacks)
    OutboxMessage.objects.filter(pk=message.pk).update(status="dead", attempts=8)
    message.refresh_from_db()
    # when
    with django_capture_on_commit_callbacks(execute=False):
        assert outbox_retry(message=message, actor=admin) is True
    assert outbox_retry(message=message, actor=admin) is False
    outbox_sweep()
    # then
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)
    assert AuditEvent.objects.filter(action="outbox.retry", object_id=str(message.pk)).count() == 1


@pytest.mark.parametrize(("attempts", "low", "high"), [(1, 15, 30), (2, 30, 60), (20, 1800, 3600)])
def test_backoff_is_exponential_with_jitter_and_capped(settings, attempts, low, high):
    settings.OUTBOX_BACKOFF_BASE_SECONDS = 30
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 3600
    values = {backoff_seconds(attempts) for _ in range(50)}
    assert all(low <= v <= high for v in values)
    assert len(values) > 1


BROKER_DOWN_SCRIPT = """
import django, time
django.setup()
from django.db import transaction
from plum.services.outbox import outbox_enqueue
started = time.monotonic()
with transaction.atomic():
    message = outbox_enqueue(kind="email", payload={
        "to": ["ravi@example.com"], "subject": "Broker down", "text": "still delivered"})
print(message.pk)
print(round(time.monotonic() - started, 2))
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_message_committed_while_the_broker_is_down_is_delivered_once_by_the_sweeper(
    smtp_server, services_env
):
    # given: a process commits a message while its broker (Redis) is unreachable
    from tests.stubs import free_port

    env = {**services_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = subprocess.run(
        [sys.executable, "-c", BROKER_DOWN_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    message_id, seconds = done.stdout.split()
    message = OutboxMessage.objects.get(pk=message_id)
    assert (message.status, message.attempts) == ("pending", 0)
    assert float(seconds) < 10, "the commit must not hang on the unreachable broker"
    assert "left to the sweeper" in done.stderr
    # when: the periodic sweeper runs, twice
    first = outbox_sweep()
    second = outbox_sweep()
    # then
    message.refresh_from_db()
    assert (first, second) == (1, 0)
    assert (message.status, message.attempts) == ("sent", 1)
    assert [m["Subject"] for m in smtp_server.messages] == ["Broker down"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_deliver_each_message_exactly_once(smtp_server):
    # given
    import threading

    from django.db import connection

    with transaction.atomic():
        for i in range(30):
            outbox_enqueue(kind="email", payload={**EMAIL, "subject": f"m{i}"})
    # (REDIS_URL-less runs deliver on commit eagerly; make every message pending again)
    OutboxMessage.objects.update(status="pending", attempts=0, sent_at=None)
    smtp_server.messages.clear()
    counts = []

    def sweep():
        try:
            counts.append(outbox_sweep())
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sum(counts) == 30
    assert sorted(m["Subject"] for m in smtp_server.messages) == sorted(f"m{i}" for i in range(30))
    assert set(OutboxMessage.objects.values_list("status", "attempts")) == {("sent", 1)}


@pytest.mark.django_db
def test_a_few_messages_of_one_change_are_published_as_one_task_and_many_as_sweeps(
    smtp_server, django_capture_on_commit_callbacks, monkeypatch
):
    # given: what the on-commit publishes send to the broker, recorded
    from plum import tasks
    from plum.services.outbox import SWEEP_KICK_ABOVE, outbox_enqueue_many

    published = []
    monkeypatch.setattr(
        tasks.outbox_deliver_task, "apply_async", lambda **kw: published.append(("one", kw))
    )
    monkeypatch.setattr(
        tasks.outbox_sweep_task, "apply_async", lambda **kw: published.append(("sweep", kw))
    )
    few = [({**EMAIL, "subject": f"f{i}"}, None) for i in range(3)]
    many = [({**EMAIL, "subject": f"m{i}"}, None) for i in range(SWEEP_KICK_ABOVE + 1)]
    # when
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        rows = outbox_enqueue_many(kind="email", messages=few)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        outbox_enqueue_many(kind="email", messages=many)
    # then: one task names the three messages; the many are left to one sweep
    assert published == [
        ("one", {"args": [str(r.pk) for r in rows], "retry": False}),
        ("sweep", {"retry": False}),
    ]
    # and the task given several ids delivers each of them, once, however often it runs
    for _ in range(2):
        tasks.outbox_deliver_task.run(*[str(r.pk) for r in rows])
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["f0", "f1", "f2"]
    assert set(
        OutboxMessage.objects.filter(pk__in=[r.pk for r in rows]).values_list("status", "attempts")
    ) == {("sent", 1)}


@pytest.mark.django_db
def test_one_failing_message_does_not_hold_back_the_others_in_its_task(smtp_server, monkeypatch):
    # given: three messages in one task, the first of which cannot be delivered
    from plum import tasks
    from plum.services.outbox import outbox_enqueue_many

    rows = outbox_enqueue_many(
        kind="email", messages=[({**EMAIL, "subject": f"f{i}"}, None) for i in range(3)]
    )
    real = tasks.outbox_deliver

    def deliver(*, message_id):
        if message_id == str(rows[0].pk):
            raise RuntimeError("database fell over")
        return real(message_id=message_id)

    monkeypatch.setattr(tasks, "outbox_deliver", deliver)
    # when
    with pytest.raises(RuntimeError, match="database fell over"):
        tasks.outbox_deliver_task.run(*[str(r.pk) for r in rows])
    # then: the other two went out; the failed one is still pending for the sweeper
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["f1", "f2"]
    assert OutboxMessage.objects.get(pk=rows[0].pk).status == "pending"


@pytest.mark.django_db
def test_an_outbox_batch_writes_its_messages_in_one_insert_published_as_one_task(
    django_capture_on_commit_callbacks, monkeypatch
):
    # given
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from plum import tasks
    from plum.services.outbox import outbox_batch, outbox_enqueue, outbox_enqueue_many

    published = []
    monkeypatch.setattr(tasks.outbox_deliver_task, "apply_async", lambda **kw: published.append(kw))
    # when
    with (
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
        CaptureQueriesContext(connection) as queries,
        outbox_batch(),
    ):
        first = outbox_enqueue_many(
            kind="email", messages=[({**EMAIL, "subject": f"f{i}"}, None) for i in range(2)]
        )
        second = outbox_enqueue(kind="email", payload={**EMAIL, "subject": "s"})
        assert not OutboxMessage.objects.exists()  # not written before the block ends
    # then: one INSERT of the three, in the order written, and one task naming them
    ids = [m.pk for m in [*first, second]]
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert list(OutboxMessage.objects.order_by("created_at").values_list("pk", flat=True)) == ids
    assert published == [{"args": [str(pk) for pk in ids], "retry": False}]


@pytest.mark.django_db
def test_an_outbox_batch_that_fails_writes_nothing():
    from plum.services.outbox import outbox_batch, outbox_enqueue

    with pytest.raises(RuntimeError), transaction.atomic(), outbox_batch():
        outbox_enqueue(kind="email", payload=EMAIL)
        raise RuntimeError("refused")
    assert not OutboxMessage.objects.exists()
