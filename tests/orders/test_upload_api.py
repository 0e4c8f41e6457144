"""The uploads API: the matrix (anonymous, wrong programme, wrong scope, success), files and
JSON rows, the limits, the error report and confirmation."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orders.models import Order, Upload
from tests.orders.upload_helpers import csv_bytes, row, rows_csv, run_chunks

pytestmark = pytest.mark.django_db


def post_file(api, campaign, raw, name="staff.csv", **headers):
    return api.post(
        "/api/v1/uploads",
        {"campaign": campaign.pk, "file": SimpleUploadedFile(name, raw, "text/csv")},
        format="multipart",
        **headers,
    )


def test_a_file_is_uploaded_validated_and_shown_with_its_counts(client_api, campaign):
    # when
    response = post_file(client_api, campaign, csv_bytes(row(1), row(2, phone="12345")))
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "validated"
    assert body["counts"] == {
        "rows": 2,
        "valid": 1,
        "invalid": 1,
        "dispatched": 0,
        "issued": 0,
        "refused": 0,
    }
    assert body["first_errors"] == [
        {
            "row": "3",
            "column": "phone",
            "message": "Not an E.164 phone number (e.g. +14155550123).",
            "value": "12345",
            "external_id": "EMP-000002",
        }
    ]
    assert (body["source"], body["file_name"], body["programme"]) == ("api", "staff.csv", "alpha")
    assert Order.objects.count() == 0
    # and the detail shows the same numbers
    detail = client_api.get(f"/api/v1/uploads/{body['id']}").json()
    assert detail["counts"] == body["counts"]


def test_the_error_report_is_a_csv(client_api, campaign):
    upload_id = post_file(client_api, campaign, csv_bytes(row(1, email="=1+1"))).json()["id"]
    response = client_api.get(f"/api/v1/uploads/{upload_id}/errors")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    text = b"".join(response.streaming_content).decode()
    assert text.splitlines() == [
        "row,column,message,value,external_id",
        "2,email,Not a valid e-mail address.,'=1+1,EMP-000001",
    ]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (csv_bytes(row(1, name="José"), encoding="latin-1"), "upload_encoding_invalid"),
        (csv_bytes(row(1), encoding="utf-16"), "upload_encoding_invalid"),
        (csv_bytes("E1", header="external_id"), "upload_header_invalid"),
        (csv_bytes(header="external_id,name,email,phone,country,bonus"), "upload_header_invalid"),
        (b"", "upload_empty"),
    ],
)
def test_a_file_refused_whole_is_a_400_with_its_code_and_stores_nothing(
    client_api, campaign, raw, code
):
    response = post_file(client_api, campaign, raw)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert Upload.objects.count() == 0


def test_a_body_over_the_upload_limit_is_a_413_naming_it(client_api, campaign, settings):
    settings.API_UPLOAD_MAX_BYTES = 1000
    response = post_file(client_api, campaign, rows_csv(30))
    assert response.status_code == 413
    assert "at most 1000" in response.json()["error"]["message"]
    assert Upload.objects.count() == 0


def test_too_many_rows_is_a_400_naming_the_limit(client_api, campaign, settings):
    settings.UPLOAD_MAX_ROWS = 5
    response = post_file(client_api, campaign, rows_csv(6))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upload_too_many_rows"
    assert "limit is 5 rows" in response.json()["error"]["message"]


def test_json_rows_from_an_hr_connector(client_api, campaign):
    response = client_api.post(
        "/api/v1/uploads",
        {
            "campaign": campaign.pk,
            "rows": [{"external_id": "E1", "email": "e1@example.com", "reference": "hr-1"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["counts"]["valid"] == 1


def test_an_idempotency_key_replays_and_creates_one_upload(client_api, campaign):
    body = {"campaign": campaign.pk, "rows": [{"external_id": "E1", "email": "e@example.com"}]}
    first = client_api.post("/api/v1/uploads", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    second = client_api.post("/api/v1/uploads", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, second.status_code) == (201, 201)
    assert second["Idempotent-Replayed"] == "true"
    assert Upload.objects.count() == 1


def test_confirm_needs_send_only_valid_for_a_file_with_errors(client_api, campaign):
    upload_id = post_file(client_api, campaign, csv_bytes(row(1), row(2, email="x"))).json()["id"]
    # when
    refused = client_api.post(f"/api/v1/uploads/{upload_id}/confirm", {}, format="json")
    # then
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "upload_has_invalid_rows"
    assert Order.objects.count() == 0
    # when
    accepted = client_api.post(
        f"/api/v1/uploads/{upload_id}/confirm", {"send_only_valid": True}, format="json"
    )
    # then
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "dispatching"
    run_chunks(Upload.objects.get(pk=upload_id))
    detail = client_api.get(f"/api/v1/uploads/{upload_id}").json()
    assert detail["status"] == "completed"
    assert detail["counts"]["issued"] == 1
    assert detail["progress"]["percent"] == 100
    assert Order.objects.count() == 1


def test_the_template_is_the_header(client_api):
    response = client_api.get("/api/v1/uploads/template")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).decode().splitlines() == [
        "external_id,name,email,phone,country,channel,value,reference"
    ]


def test_anonymous_is_401(api, campaign):
    assert api.get("/api/v1/uploads").status_code == 401
    assert post_file(api, campaign, rows_csv(1)).status_code == 401


def test_another_programmes_key_sees_404(make_api, other_programme, campaign):
    # given: an upload in `alpha`, and a key of `beta`
    from orders.services.uploads import upload_create_from_csv
    from plum.actors import SYSTEM

    upload = upload_create_from_csv(
        campaign=campaign, raw=rows_csv(1), file_name="a.csv", source="admin", actor=SYSTEM
    )
    api = make_api([other_programme])
    # then
    assert post_file(api, campaign, rows_csv(1)).status_code == 404
    assert api.get(f"/api/v1/uploads/{upload.pk}").status_code == 404
    assert api.get(f"/api/v1/uploads/{upload.pk}/errors").status_code == 404
    assert api.post(f"/api/v1/uploads/{upload.pk}/confirm", {}, format="json").status_code == 404
    assert api.get("/api/v1/uploads").json()["results"] == []
    assert Upload.objects.get(pk=upload.pk).status == "validated"


def test_a_read_only_key_cannot_upload_or_confirm(make_api, programme, campaign):
    api = make_api([programme], scopes=["read"])
    response = post_file(api, campaign, rows_csv(1))
    assert response.status_code == 403
    assert "issue" in response.json()["error"]["message"]
    assert Upload.objects.count() == 0


def test_a_test_key_uploads_test_data(make_api, programme, campaign):
    api = make_api([programme], is_test=True)
    body = post_file(api, campaign, rows_csv(1)).json()
    assert body["is_test"] is True


def test_json_rows_that_are_not_objects_are_refused(client_api, campaign):
    response = client_api.post(
        "/api/v1/uploads", {"campaign": campaign.pk, "rows": ["E1"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "upload_malformed"
    assert Upload.objects.count() == 0
