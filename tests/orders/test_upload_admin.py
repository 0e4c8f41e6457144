"""The uploads admin: upload page, validation preview, error report, confirm with the "send
only the valid rows" choice, progress, list; scoped to the user's programmes."""

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile

from orders.models import Order, Upload
from orders.services.uploads import upload_create_from_csv
from plum import roles
from plum.actors import SYSTEM
from tests.orders.upload_helpers import csv_bytes, row, rows_csv, run_chunks

pytestmark = pytest.mark.django_db
BASE = "/admin/orders/upload/"


@pytest.fixture
def manager(client, make_user, programme):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    return client


def upload_file(client, campaign, raw, name="staff.csv"):
    return client.post(
        f"{BASE}add/", {"campaign": campaign.pk, "file": SimpleUploadedFile(name, raw)}
    )


def test_upload_preview_confirm_and_progress(manager, campaign):
    # when: a file with one bad row
    response = upload_file(manager, campaign, csv_bytes(row(1), row(2, phone="0800")))
    # then: the preview, with counts and the first errors
    upload = Upload.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{BASE}{upload.pk}/change/"
    page = manager.get(response["Location"]).content.decode()
    assert "2 rows: 1 valid, 1 invalid" in page
    assert "Not an E.164 phone number" in page
    assert f"{BASE}{upload.pk}/errors/" in page
    assert 'name="send_only_valid"' in page
    # and the report downloads
    report = manager.get(f"{BASE}{upload.pk}/errors/")
    assert b"".join(report.streaming_content).decode().splitlines()[1].startswith("3,phone,")
    # when: confirmed without the choice
    manager.post(f"{BASE}{upload.pk}/confirm/")
    upload.refresh_from_db()
    assert (upload.status, Order.objects.count()) == ("validated", 0)
    # when: the valid rows only
    response = manager.post(f"{BASE}{upload.pk}/confirm/", {"send_only_valid": "1"}, follow=True)
    assert [str(m) for m in get_messages(response.wsgi_request)][-1].startswith("Sending 1 row")
    run_chunks(upload)
    # then: progress and counts
    page = manager.get(f"{BASE}{upload.pk}/change/").content.decode()
    assert "Completed" in page
    assert '<progress max="100" value="100"' in page
    assert "1 / 1 dispatched: 1 issued, 0 refused" in page
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (csv_bytes(row(1, name="Zoë"), encoding="latin-1"), "upload_encoding_invalid"),
        (csv_bytes("x", header="external_id"), "missing column(s): name, email, phone, country"),
    ],
)
def test_a_bad_file_is_a_form_error_and_stores_nothing(manager, campaign, raw, message):
    response = upload_file(manager, campaign, raw)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Upload.objects.count() == 0


def test_a_file_over_the_limit_is_refused_naming_it(manager, campaign, settings):
    settings.API_UPLOAD_MAX_BYTES = 100
    response = upload_file(manager, campaign, rows_csv(5))
    assert "the limit is 100 bytes" in response.content.decode()
    assert Upload.objects.count() == 0


def test_the_template_downloads(manager):
    response = manager.get(f"{BASE}template/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"external_id,name,email,phone")


def test_the_list_and_pages_are_scoped(
    client, make_user, programme, other_programme, make_campaign
):
    # given: an upload in each programme
    ours = upload_create_from_csv(
        campaign=make_campaign(programme),
        raw=rows_csv(1),
        file_name="ours.csv",
        source="admin",
        actor=SYSTEM,
    )
    theirs = upload_create_from_csv(
        campaign=make_campaign(other_programme, name="Beta"),
        raw=rows_csv(1),
        file_name="theirs.csv",
        source="admin",
        actor=SYSTEM,
    )
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # then
    page = client.get(BASE).content.decode()
    assert "ours.csv" in page and "theirs.csv" not in page
    for suffix in ("change/", "errors/"):
        assert client.get(f"{BASE}{theirs.pk}/{suffix}").status_code == 404
    assert client.post(f"{BASE}{theirs.pk}/confirm/").status_code == 404
    assert Upload.objects.get(pk=theirs.pk).status == "validated"
    assert client.get(f"{BASE}{ours.pk}/change/").status_code == 200


def test_a_support_agent_cannot_upload(client, make_user, programme, campaign):
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    assert client.get(f"{BASE}add/").status_code == 403


def test_anonymous_is_sent_to_login(client):
    response = client.get(BASE)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
