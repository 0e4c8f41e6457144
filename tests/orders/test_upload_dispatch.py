"""Confirming an upload: what is sent, exactly once per row, whatever is retried."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.errors import CampaignNotActiveError
from campaigns.models import Campaign
from campaigns.services.campaigns import campaign_transition
from orders.models import Order, Upload, UploadChunk, UploadRow
from orders.services.uploads import (
    _claim_next,
    _dispatch_row,
    upload_chunk_dispatch,
    upload_confirm,
    upload_create_from_csv,
    upload_dispatch_sweep,
)
from orders.uploads.errors import (
    UploadExceedsCampaignError,
    UploadHasInvalidRowsError,
    UploadHasNoValidRowsError,
)
from plum.actors import SYSTEM
from plum.errors import InvalidTransitionError
from plum.models import Job, Member
from tests.orders.upload_helpers import csv_bytes, row, rows_csv, run_chunks

D = Decimal
pytestmark = pytest.mark.django_db


def create(campaign, raw, **kw):
    return upload_create_from_csv(
        campaign=campaign, raw=raw, file_name="f.csv", source="admin", actor=SYSTEM, **kw
    )


def confirm(upload, send_only_valid=False):
    return upload_confirm(upload=upload, send_only_valid=send_only_valid, actor=SYSTEM)


def test_confirm_issues_one_order_per_valid_row(campaign, settings):
    # given
    settings.UPLOAD_CHUNK_ROWS = 2
    upload = create(campaign, csv_bytes(row(1), row(2, value="1000"), row(3, channel="sms")))
    # when
    upload = confirm(upload)
    assert (upload.status, upload.chunks_total) == ("dispatching", 2)
    run_chunks(upload)
    # then
    upload.refresh_from_db()
    assert (upload.status, upload.dispatched_count, upload.issued_count, upload.refused_count) == (
        "completed",
        3,
        3,
        0,
    )
    assert upload.chunks_done == 2
    orders = list(Order.objects.order_by("member__external_id"))
    assert [(o.member.external_id, o.value, o.source, o.reference, o.status) for o in orders] == [
        ("EMP-000001", D("500.00"), "upload", "ref-1", "completed"),
        ("EMP-000002", D("1000.00"), "upload", "ref-2", "completed"),
        ("EMP-000003", D("500.00"), "upload", "ref-3", "completed"),
    ]
    assert {r.order_id for r in UploadRow.objects.filter(upload=upload)} == {o.pk for o in orders}
    assert Member.objects.get(external_id="EMP-000003").preferred_channel == "sms"
    assert Member.objects.get(external_id="EMP-000001").preferred_channel == ""
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (3, D("2000.00"))
    job = Job.objects.get(pk=upload.job_id)
    assert (job.kind, job.status, job.done, job.total) == ("upload.dispatch", "succeeded", 3, 3)


def test_a_file_with_errors_is_not_sent_unless_only_the_valid_rows_are_chosen(campaign):
    # given
    upload = create(campaign, csv_bytes(row(1), row(2, email="bad"), row(3)))
    # when / then: refused, nothing changed
    with pytest.raises(UploadHasInvalidRowsError):
        confirm(upload)
    upload.refresh_from_db()
    assert (upload.status, Order.objects.count(), UploadChunk.objects.count()) == (
        "validated",
        0,
        0,
    )
    # when: the valid rows only
    upload = confirm(upload, send_only_valid=True)
    run_chunks(upload)
    # then
    upload.refresh_from_db()
    assert (upload.status, upload.send_only_valid, upload.issued_count) == ("completed", True, 2)
    assert sorted(Order.objects.values_list("member__external_id", flat=True)) == [
        "EMP-000001",
        "EMP-000003",
    ]
    assert UploadRow.objects.get(upload=upload, row_number=3).status == "invalid"


def test_a_rejected_upload_cannot_be_confirmed(programme, make_campaign):
    campaign = make_campaign(programme, max_rewards=1)
    upload = create(campaign, rows_csv(2))
    assert upload.status == "rejected"
    with pytest.raises(InvalidTransitionError):
        confirm(upload, send_only_valid=True)
    assert Order.objects.count() == 0


def test_confirm_checks_the_campaign_again(programme, make_campaign):
    # given: validated while it fit, then another upload took the room
    campaign = make_campaign(programme, max_rewards=3)
    first = create(campaign, rows_csv(2))
    second = create(campaign, rows_csv(2, start=10))
    run_chunks(confirm(first))
    # when / then
    with pytest.raises(UploadExceedsCampaignError) as exc:
        confirm(second)
    assert "remaining count of 1" in exc.value.message
    second.refresh_from_db()
    assert (second.status, Order.objects.count()) == ("validated", 2)


def test_confirm_refuses_a_campaign_that_is_not_issuing(campaign):
    upload = create(campaign, rows_csv(1))
    campaign_transition(campaign=campaign, action="pause", actor=SYSTEM)
    with pytest.raises(CampaignNotActiveError):
        confirm(upload)
    upload.refresh_from_db()
    assert (upload.status, Order.objects.count()) == ("validated", 0)


def test_an_upload_with_no_valid_row_is_rejected(campaign):
    upload = create(campaign, csv_bytes(row(1, email="bad")))
    assert upload.status == "rejected"
    with pytest.raises(InvalidTransitionError):
        confirm(upload, send_only_valid=True)


def test_no_valid_rows_refuses_confirmation_even_when_validated(campaign):
    upload = create(campaign, rows_csv(1))
    Upload.objects.filter(pk=upload.pk).update(valid_count=0, invalid_count=1)
    with pytest.raises(UploadHasNoValidRowsError):
        confirm(upload)


def test_reconfirming_never_issues_a_row_twice(campaign):
    # given
    upload = create(campaign, rows_csv(3))
    upload = confirm(upload)
    # when: confirmed again while dispatching (a resume), then run everything twice
    again = confirm(upload)
    run_chunks(upload)
    run_chunks(upload)
    # then
    assert again.status == "dispatching"
    assert Order.objects.count() == 3
    upload.refresh_from_db()
    assert (upload.status, upload.issued_count, upload.dispatched_count) == ("completed", 3, 3)
    # and a finished upload refuses confirmation
    with pytest.raises(InvalidTransitionError):
        confirm(upload)
    assert Order.objects.count() == 3


def test_a_chunk_delivered_twice_issues_each_row_once(campaign, settings):
    settings.UPLOAD_CHUNK_ROWS = 10
    upload = confirm(create(campaign, rows_csv(5)))
    chunk = UploadChunk.objects.get(upload=upload)
    # when
    first = upload_chunk_dispatch(chunk_id=chunk.pk)
    second = upload_chunk_dispatch(chunk_id=chunk.pk)
    # then
    assert (first, second) == (5, 0)
    assert Order.objects.count() == 5
    upload.refresh_from_db()
    assert (upload.chunks_done, upload.issued_count, upload.status) == (1, 5, "completed")


def test_a_half_done_chunk_run_again_finishes_the_rest_only(campaign):
    # given: a worker died after two rows (their transactions committed, the rest untouched)
    upload = confirm(create(campaign, rows_csv(4)))
    chunk = UploadChunk.objects.get(upload=upload)
    for _ in range(2):
        with transaction.atomic():
            _dispatch_row(upload, _claim_next(chunk), SYSTEM)
    UploadChunk.objects.filter(pk=chunk.pk).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    # when: the sweeper sends it again and it runs
    assert upload_dispatch_sweep(stale_after=timedelta(minutes=2)) == 1
    upload_chunk_dispatch(chunk_id=chunk.pk)  # a no-op where Celery ran the re-send eagerly
    # then
    upload.refresh_from_db()
    assert (upload.status, upload.issued_count, Order.objects.count()) == ("completed", 4, 4)


def test_the_sweeper_leaves_fresh_chunks_alone_and_resends_pending_ones_of_a_silent_upload(
    campaign, settings
):
    settings.UPLOAD_CHUNK_ROWS = 1
    upload = confirm(create(campaign, rows_csv(2)))
    assert upload_dispatch_sweep(stale_after=timedelta(minutes=2)) == 0
    UploadChunk.objects.filter(upload=upload).update(
        enqueued_at=timezone.now() - timedelta(minutes=10)
    )
    assert upload_dispatch_sweep(stale_after=timedelta(minutes=2)) == 2


def test_rows_governance_refuses_at_dispatch_are_refused_and_reported(programme, make_campaign):
    # given: fits at validation, then the campaign's room is taken by other issuance
    campaign = make_campaign(programme, max_rewards=3)
    upload = confirm(create(campaign, rows_csv(3)))
    Campaign.objects.filter(pk=campaign.pk).update(issued_count=2)
    # when
    run_chunks(upload)
    # then
    upload.refresh_from_db()
    assert (upload.status, upload.issued_count, upload.refused_count) == (
        "partially_failed",
        1,
        2,
    )
    refused = UploadRow.objects.filter(upload=upload, status="refused")
    assert {r.refusal_code for r in refused} == {"campaign_exhausted"}
    assert all(r.order_id is None for r in refused)


def test_a_test_upload_issues_test_orders_and_counts_nothing(programme, make_campaign):
    campaign = make_campaign(programme, max_rewards=1)
    upload = confirm(create(campaign, rows_csv(2), is_test=True))
    run_chunks(upload)
    assert list(Order.objects.values_list("is_test", flat=True)) == [True, True]
    campaign.refresh_from_db()
    assert campaign.issued_count == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_chunk_run_by_four_workers_at_once_issues_each_row_once(campaign, settings):
    # given
    settings.UPLOAD_CHUNK_ROWS = 100
    upload = confirm(create(campaign, rows_csv(60)))
    chunk = UploadChunk.objects.get(upload=upload)
    results, errors = [], []

    def work():
        try:
            results.append(upload_chunk_dispatch(chunk_id=chunk.pk))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert errors == []
    assert sum(results) == 60
    assert Order.objects.count() == 60
    assert Order.objects.values("member").distinct().count() == 60
    upload.refresh_from_db()
    assert (upload.status, upload.chunks_done, upload.issued_count) == ("completed", 1, 60)
