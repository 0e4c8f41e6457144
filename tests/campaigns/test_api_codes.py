"""POST /campaigns/{id}/codes (generation as a Job) and POST /campaigns/{id}/codes/import (a
merchant's CSV into the pool)."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.codes import is_well_formed
from campaigns.models import Voucher
from campaigns.services.campaigns import campaign_transition
from campaigns.services.codes import MAX_GENERATE
from plum.actors import SYSTEM
from plum.models import AuditEvent, Job
from plum.services.jobs import job_run

pytestmark = pytest.mark.usefixtures("fresh_cache")


def codes_url(campaign) -> str:
    return f"/api/v1/campaigns/{campaign.pk}/codes"


def import_url(campaign, query: str = "") -> str:
    return f"/api/v1/campaigns/{campaign.pk}/codes/import{query}"


def pool(campaign) -> list[tuple[str, bool]]:
    return list(
        Voucher.objects.filter(campaign=campaign, status="available")
        .order_by("code")
        .values_list("code", "is_test")
    )


# --- generate --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_generate_answers_202_with_the_job_as_get_jobs_shows_it(client_api, campaign):
    # when
    response = client_api.post(codes_url(campaign), {"count": 25, "test": False}, format="json")
    # then
    assert response.status_code == 202
    job = Job.objects.get()
    assert response["Location"] == f"/api/v1/jobs/{job.pk}"
    assert response.json() == client_api.get(f"/api/v1/jobs/{job.pk}").json()
    assert (job.kind, job.total, job.params, job.created_by_client_id) == (
        "campaign.generate_codes",
        25,
        {"campaign_id": campaign.pk, "count": 25, "is_test": False},
        client_api.plum_client.pk,
    )
    assert response.json()["programme"] == "alpha"


@pytest.mark.django_db
def test_the_generate_job_fills_the_pool_with_well_formed_live_codes(client_api, campaign):
    # given
    response = client_api.post(codes_url(campaign), {"count": 25}, format="json")
    # when
    job_run(job_id=response.json()["id"])
    # then
    codes = pool(campaign)
    assert len(codes) == 25
    assert {is_test for _, is_test in codes} == {False}
    assert all(is_well_formed(code) for code, _ in codes)
    job = client_api.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert (job["status"], job["done"], job["percent"], job["result"]) == (
        "succeeded",
        25,
        100,
        {"generated": 25, "collisions_retried": 0},
    )
    assert AuditEvent.objects.filter(action="voucher.generate").get().actor_client_id == (
        client_api.plum_client.pk
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("is_test_key", "body", "expected_is_test"),
    [
        (False, {"count": 3, "test": True}, True),
        (False, {"count": 3}, False),
        (True, {"count": 3, "test": True}, True),
        (True, {"count": 3}, True),
    ],
)
def test_generate_makes_test_codes_when_asked_and_for_test_keys_by_default(
    make_api, programme, campaign, is_test_key, body, expected_is_test
):
    # given
    api = make_api([programme], is_test=is_test_key)
    # when
    response = api.post(codes_url(campaign), body, format="json")
    job_run(job_id=response.json()["id"])
    # then
    assert response.status_code == 202
    assert Job.objects.get().params["is_test"] is expected_is_test
    assert [is_test for _, is_test in pool(campaign)] == [expected_is_test] * 3


@pytest.mark.django_db
def test_a_test_key_may_not_generate_live_codes(make_api, programme, campaign, snapshot):
    # given
    api = make_api([programme], is_test=True)
    before = snapshot()
    # when
    response = api.post(codes_url(campaign), {"count": 3, "test": False}, format="json")
    # then
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "permission_denied",
            "message": "A test API key generates and imports test codes only.",
            "fields": {"test": ["Must be true with a test API key."]},
        }
    }
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"count": ["This field is required."]}),
        ({"count": 0}, {"count": ["Ensure this value is greater than or equal to 1."]}),
        (
            {"count": MAX_GENERATE + 1},
            {"count": [f"Ensure this value is less than or equal to {MAX_GENERATE}."]},
        ),
        ({"count": 3, "prefix": "X"}, {"prefix": ["Unknown field."]}),
        ({"count": 3, "test": "maybe"}, {"test": ["Must be a valid boolean."]}),
    ],
)
def test_generate_refuses_bad_input(client_api, campaign, snapshot, body, fields):
    # given
    before = snapshot()
    # when
    response = client_api.post(codes_url(campaign), body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before


@pytest.mark.django_db
def test_generate_into_an_ended_campaign_is_refused(client_api, campaign, snapshot):
    # given
    campaign_transition(campaign=campaign, action="end", actor=SYSTEM)
    before = snapshot()
    # when
    response = client_api.post(codes_url(campaign), {"count": 3}, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "An ended campaign takes no new codes.",
        "fields": {},
    }
    assert snapshot() == before


# --- import ----------------------------------------------------------------------------------

GOOD_CSV = "code,value\nMERCH-0001,\nmerch-0002,500\n"


@pytest.mark.django_db
def test_import_csv_puts_the_codes_into_the_pool(client_api, campaign):
    # when
    response = client_api.post(import_url(campaign), GOOD_CSV, content_type="text/csv")
    # then
    assert response.status_code == 201
    assert response.json() == {"imported": 2, "errors": []}
    assert pool(campaign) == [("MERCH0001", False), ("MERCH0002", False)]
    event = AuditEvent.objects.get(action="voucher.import")
    assert (event.actor_client_id, event.changes) == (
        client_api.plum_client.pk,
        {"imported": [None, 2], "is_test": [None, False]},
    )


@pytest.mark.django_db
def test_import_reports_bad_rows_and_imports_the_good_ones(client_api, campaign, make_voucher):
    # given
    existing = make_voucher(campaign)
    past = (timezone.now() - timedelta(days=1)).isoformat()
    text = (
        "code,value,expires_at\n"
        "GOOD-1,,\n"
        "GOOD-1,,\n"
        f"{existing.code},,\n"
        ",,\n"
        "GOOD-2,abc,\n"
        f"GOOD-3,,{past}\n"
        "GOOD-4,,2031-01-01T00:00:00+00:00\n"
    )
    # when
    response = client_api.post(import_url(campaign), text, content_type="text/csv")
    # then
    assert response.status_code == 201
    assert response.json() == {
        "imported": 2,
        "errors": [
            {"row": 3, "column": "code", "message": "Duplicate of row 2."},
            {"row": 4, "column": "code", "message": "Already in Plum."},
            {"row": 5, "column": "code", "message": "A code of 1-64 characters."},
            {"row": 6, "column": "value", "message": "Not a value this reward is sold at."},
            {"row": 7, "column": "expires_at", "message": "A future ISO 8601 time with a zone."},
        ],
    }
    assert pool(campaign) == [("GOOD1", False), ("GOOD4", False)]


@pytest.mark.django_db
def test_import_where_every_row_is_refused_answers_200(client_api, campaign, snapshot):
    # given
    before = snapshot()
    # when
    response = client_api.post(import_url(campaign), "code\n\n,\n", content_type="text/csv")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "imported": 0,
        "errors": [{"row": 2, "column": "code", "message": "A code of 1-64 characters."}],
    }
    assert snapshot() == before


@pytest.mark.django_db
def test_import_accepts_a_multipart_upload(client_api, campaign):
    # given
    upload = SimpleUploadedFile("codes.csv", GOOD_CSV.encode(), content_type="text/csv")
    # when
    response = client_api.post(import_url(campaign), {"file": upload}, format="multipart")
    # then
    assert response.status_code == 201
    assert response.json() == {"imported": 2, "errors": []}
    assert pool(campaign) == [("MERCH0001", False), ("MERCH0002", False)]


@pytest.mark.django_db
def test_import_multipart_without_a_file_is_refused(client_api, campaign, snapshot):
    # given
    before = snapshot()
    # when
    response = client_api.post(import_url(campaign), {"other": "x"}, format="multipart")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"file": ["This field is required."]}
    assert snapshot() == before


@pytest.mark.django_db
def test_import_reads_the_charset_the_content_type_names(client_api, campaign):
    # when
    response = client_api.post(
        import_url(campaign),
        "code\nCAFÉ-1\n".encode("latin-1"),
        content_type="text/csv; charset=latin-1",
    )
    # then
    assert response.status_code == 201
    assert pool(campaign) == [("CAFÉ1", False)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"code\n\xff\xfe\n", "text/csv", 400, "malformed_csv"),
        (b"", "text/csv", 400, "invalid"),
        (b"name\nX\n", "text/csv", 400, "invalid"),
        (b'{"codes": ["A"]}', "application/json", 415, "unsupported_media_type"),
    ],
)
def test_import_refuses_what_is_not_a_codes_csv(
    client_api, campaign, snapshot, body, content_type, status, code
):
    # given
    before = snapshot()
    # when
    response = client_api.post(import_url(campaign), body, content_type=content_type)
    # then
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert snapshot() == before


@pytest.mark.django_db
def test_import_bigger_than_the_upload_limit_is_413(client_api, campaign, snapshot, settings):
    # given
    settings.API_UPLOAD_MAX_BYTES = 100
    before = snapshot()
    # when
    response = client_api.post(
        import_url(campaign), "code\n" + "ABCDEFGH\n" * 20, content_type="text/csv"
    )
    # then
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert snapshot() == before


@pytest.mark.django_db
def test_import_may_be_larger_than_other_api_bodies(client_api, campaign, settings):
    # given: an import file bigger than what other endpoints accept
    settings.API_MAX_BODY_BYTES = 100
    body = "code\n" + "".join(f"MERCHANT{i:06d}\n" for i in range(20))
    # when
    response = client_api.post(import_url(campaign), body, content_type="text/csv")
    member = client_api.post("/api/v1/members", {"external_id": "x" * 120}, format="json")
    # then
    assert response.status_code == 201, response.json()
    assert response.json()["imported"] == 20
    assert member.status_code == 413


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("is_test_key", "query", "expected_is_test"),
    [(False, "", False), (False, "?test=true", True), (True, "", True), (True, "?test=1", True)],
)
def test_import_makes_test_codes_when_asked_and_for_test_keys_by_default(
    make_api, programme, campaign, is_test_key, query, expected_is_test
):
    # given
    api = make_api([programme], is_test=is_test_key)
    # when
    response = api.post(import_url(campaign, query), GOOD_CSV, content_type="text/csv")
    # then
    assert response.status_code == 201
    assert pool(campaign) == [("MERCH0001", expected_is_test), ("MERCH0002", expected_is_test)]


@pytest.mark.django_db
def test_a_test_key_may_not_import_live_codes(make_api, programme, campaign, snapshot):
    # given
    api = make_api([programme], is_test=True)
    before = snapshot()
    # when
    response = api.post(import_url(campaign, "?test=false"), GOOD_CSV, content_type="text/csv")
    # then
    assert response.status_code == 403
    assert response.json()["error"]["fields"] == {"test": ["Must be true with a test API key."]}
    assert snapshot() == before


@pytest.mark.django_db
def test_import_with_an_idempotency_key_replays_and_imports_once(client_api, campaign):
    # given
    first = client_api.post(
        import_url(campaign), GOOD_CSV, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="imp-1"
    )
    # when
    replay = client_api.post(
        import_url(campaign), GOOD_CSV, content_type="text/csv", HTTP_IDEMPOTENCY_KEY="imp-1"
    )
    other_body = client_api.post(
        import_url(campaign),
        "code\nOTHER-1\n",
        content_type="text/csv",
        HTTP_IDEMPOTENCY_KEY="imp-1",
    )
    # then
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert pool(campaign) == [("MERCH0001", False), ("MERCH0002", False)]
    assert AuditEvent.objects.filter(action="voucher.import").count() == 1
