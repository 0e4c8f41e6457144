"""IPA files: every bad file gets its specific error and issues nothing; row problems are
stored per row with a downloadable report. Real database, no mocks."""

from decimal import Decimal

import pytest

from campaigns.models import Campaign
from orders.models import Order, Upload, UploadRow
from orders.services.uploads import upload_create_from_csv, upload_create_from_rows
from orders.uploads import selectors
from orders.uploads.errors import (
    UploadEncodingError,
    UploadHeaderError,
    UploadMalformedError,
    UploadTooLargeError,
    UploadTooManyRowsError,
)
from plum.actors import SYSTEM
from plum.csvexport import csv_lines
from tests.campaigns.builders import issue, make_reward
from tests.factories import MemberFactory
from tests.orders.upload_helpers import HEADER, csv_bytes, row, rows_csv

D = Decimal
pytestmark = pytest.mark.django_db


def create(campaign, raw, **kw):
    return upload_create_from_csv(
        campaign=campaign, raw=raw, file_name="f.csv", source="admin", actor=SYSTEM, **kw
    )


def nothing_stored():
    return (Upload.objects.count(), UploadRow.objects.count(), Order.objects.count()) == (0, 0, 0)


def errors_of(upload):
    return [
        (r["row"], r["column"], r["message"])
        for r in selectors.upload_first_errors(upload, limit=1000)
    ]


def test_a_valid_file_is_validated_and_stored_and_issues_nothing(campaign):
    # when
    upload = create(campaign, rows_csv(3))
    # then
    assert (upload.status, upload.row_count, upload.valid_count, upload.invalid_count) == (
        "validated",
        3,
        3,
        0,
    )
    rows = list(UploadRow.objects.filter(upload=upload).order_by("row_number"))
    assert [r.row_number for r in rows] == [2, 3, 4]
    assert (rows[0].external_id, rows[0].email, rows[0].channel, rows[0].value) == (
        "EMP-000001",
        "person1@example.com",
        "email",
        None,
    )
    assert Order.objects.count() == 0
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (0, D("0"))


def test_utf8_with_a_bom_is_accepted(campaign):
    upload = create(campaign, b"\xef\xbb\xbf" + rows_csv(2))
    assert (upload.status, upload.valid_count) == ("validated", 2)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (csv_bytes(row(1, name="Zoë Müller"), encoding="latin-1"), ["not UTF-8", "Latin-1"]),
        (csv_bytes(row(1), encoding="utf-16"), ["UTF-16"]),
        (csv_bytes(row(1), encoding="utf-16-le"), ["NUL bytes", "UTF-16"]),
        (csv_bytes(row(1), encoding="utf-32"), ["UTF-32"]),
    ],
    ids=["latin-1", "utf-16-bom", "utf-16-no-bom", "utf-32"],
)
def test_a_file_not_in_utf8_is_refused_naming_its_encoding(campaign, raw, words):
    with pytest.raises(UploadEncodingError) as exc:
        create(campaign, raw)
    assert exc.value.code == "upload_encoding_invalid"
    assert all(word in exc.value.message for word in words), exc.value.message
    assert nothing_stored()


def test_missing_columns_are_named(campaign):
    with pytest.raises(UploadHeaderError) as exc:
        create(campaign, csv_bytes("E1,Asha", header="external_id,name"))
    assert exc.value.fields == {"missing": ["email", "phone", "country"]}
    assert "missing column(s): email, phone, country" in exc.value.message
    assert nothing_stored()


def test_unknown_and_repeated_columns_are_named(campaign):
    with pytest.raises(UploadHeaderError) as exc:
        create(campaign, csv_bytes(header=HEADER + ",salary,Email"))
    assert exc.value.fields == {"unknown": ["salary"], "repeated": ["email"]}
    assert nothing_stored()


def test_quoted_newlines_stay_inside_their_cell(campaign):
    # given: a name with a line break, and a reference with a comma and quotes
    raw = csv_bytes(
        row(1, name='"Asha\nRao"'),
        row(2, reference='"PO ""42"", batch 7"'),
        row(3),
    )
    # when
    upload = create(campaign, raw)
    # then: three records, numbered as a spreadsheet shows them
    assert (upload.status, upload.row_count, upload.valid_count) == ("validated", 3, 3)
    rows = {r.row_number: r for r in UploadRow.objects.filter(upload=upload)}
    assert sorted(rows) == [2, 3, 4]
    assert rows[2].name == "Asha\nRao"
    assert rows[3].reference == 'PO "42", batch 7'
    assert rows[4].external_id == "EMP-000003"


def test_a_broken_quote_is_refused_with_its_line(campaign):
    with pytest.raises(UploadMalformedError) as exc:
        create(campaign, csv_bytes(row(1, name='"Asha" Rao')))
    assert exc.value.code == "upload_malformed"
    assert nothing_stored()


def test_a_file_of_100001_rows_is_refused_naming_the_limit(campaign):
    with pytest.raises(UploadTooManyRowsError) as exc:
        create(campaign, rows_csv(100_001))
    assert exc.value.code == "upload_too_many_rows"
    assert "100,000 rows" in exc.value.message
    assert nothing_stored()


def test_a_file_over_the_size_limit_is_refused_naming_it(campaign, settings):
    settings.API_UPLOAD_MAX_BYTES = 20 * 1024 * 1024
    raw = rows_csv(3) + b" " * (20 * 1024 * 1024)
    with pytest.raises(UploadTooLargeError) as exc:
        create(campaign, raw)
    assert (exc.value.code, exc.value.status) == ("upload_too_large", 413)
    assert "20,971,520 bytes (20 MB)" in exc.value.message
    assert nothing_stored()


def test_duplicate_rows_in_the_file_are_invalid(campaign):
    upload = create(campaign, csv_bytes(row(1), row(2), row(1), row(1, name="Other")))
    assert (upload.valid_count, upload.invalid_count) == (2, 2)
    assert errors_of(upload) == [
        (4, "external_id", "Duplicate of row 2: one row per recipient."),
        (5, "external_id", "Duplicate of row 2: one row per recipient."),
    ]


@pytest.mark.parametrize(
    ("cells", "column", "message"),
    [
        ({"external_id": ""}, "external_id", "Required."),
        ({"email": ""}, "email", "Required: this row is sent by e-mail."),
        ({"email": "not-an-email"}, "email", "Not a valid e-mail address."),
        ({"phone": "98 1234 5678"}, "phone", "Not an E.164 phone number (e.g. +14155550123)."),
        ({"channel": "sms", "phone": ""}, "phone", "Required: this row is sent by sms."),
        ({"channel": "whatsapp", "phone": ""}, "phone", "Required: this row is sent by whatsapp."),
        ({"channel": "pigeon"}, "channel", "Unknown channel: use email, sms or whatsapp."),
        ({"country": "India"}, "country", "Not an ISO 3166-1 alpha-2 country code (e.g. IN)."),
        ({"value": "abc"}, "value", "Not an amount (e.g. 500 or 500.00)."),
        ({"value": "500.001"}, "value", "Not an amount (e.g. 500 or 500.00)."),
        ({"value": "-5"}, "value", "Not an amount (e.g. 500 or 500.00)."),
        ({"value": "700"}, "value", "The campaign issues one of 500.00, 1000.00."),
        ({"reference": "r" * 121}, "reference", "At most 120 characters."),
    ],
)
def test_each_row_problem_is_reported_with_row_and_column(campaign, cells, column, message):
    # when
    upload = create(campaign, csv_bytes(row(1), row(2, **cells)))
    # then
    assert (upload.status, upload.valid_count, upload.invalid_count) == ("validated", 1, 1)
    assert errors_of(upload) == [(3, column, message)]


def test_an_sms_row_needs_no_email_and_a_fixed_denomination_is_accepted(campaign):
    upload = create(campaign, csv_bytes(row(1, channel="SMS", email="", value="1000")))
    stored = UploadRow.objects.get(upload=upload)
    assert (upload.valid_count, stored.channel, stored.channel_from_file, stored.value) == (
        1,
        "sms",
        True,
        D("1000.00"),
    )


def test_a_range_reward_accepts_values_inside_it_only(programme, make_campaign):
    reward = make_reward(denominations=(), min_value=D("100"), max_value=D("5000"))
    campaign = make_campaign(programme, reward=reward)
    upload = create(campaign, csv_bytes(row(1, value="250.50"), row(2, value="5000.01")))
    assert errors_of(upload) == [(3, "value", "The campaign issues between 100.00 and 5000.00.")]


def test_recipients_already_at_their_cap_are_invalid(programme, make_campaign):
    # given: EMP-000002 already holds the cap of 1
    campaign = make_campaign(programme, per_member_cap=1)
    holder = MemberFactory(programme=programme, external_id="EMP-000002")
    issue(campaign, holder)
    # when
    upload = create(campaign, rows_csv(3))
    # then
    assert errors_of(upload) == [
        (3, "external_id", "Already holds the campaign's per-member cap of 1.")
    ]


@pytest.mark.parametrize(
    ("governance", "message"),
    [
        ({"max_rewards": 2}, "The file's 3 valid rows exceed the campaign's remaining count of 2"),
        (
            {"budget": D("1000.00")},
            "The file's valid rows total 1500.00 INR, more than the campaign's remaining budget",
        ),
    ],
)
def test_a_file_that_exceeds_the_campaign_is_rejected(
    programme, make_campaign, governance, message
):
    campaign = make_campaign(programme, **governance)
    upload = create(campaign, rows_csv(3))
    assert upload.status == "rejected"
    assert upload.valid_count == 3
    assert message in upload.file_errors[0]["message"]
    assert Campaign.objects.get(pk=campaign.pk).issued_count == 0


def test_formula_cells_are_stored_as_text_and_exported_with_a_leading_quote(campaign):
    # given: cells a spreadsheet would run as formulas
    raw = csv_bytes(
        row(1, name='=HYPERLINK("http://evil")'),
        row(2, external_id="=cmd|' /C calc'!A0", email="@SUM(1+1)"),
    )
    # when
    upload = create(campaign, raw)
    # then: stored exactly as text
    rows = {r.row_number: r for r in UploadRow.objects.filter(upload=upload)}
    assert rows[2].name == '=HYPERLINK("http://evil")'
    assert rows[3].external_id == "=cmd|' /C calc'!A0"
    # and the error report quotes them
    report = "".join(csv_lines(selectors.ERROR_REPORT_HEADER, selectors.upload_error_rows(upload)))
    assert report.splitlines() == [
        "row,column,message,value,external_id",
        "3,email,Not a valid e-mail address.,'@SUM(1+1),'=cmd|' /C calc'!A0",
    ]


def test_json_rows_are_checked_like_a_file(campaign):
    upload = upload_create_from_rows(
        campaign=campaign,
        rows=[
            {"external_id": "E1", "email": "e1@example.com", "value": 1000},
            {"external_id": "E2", "email": "bad"},
        ],
        actor=SYSTEM,
    )
    assert (upload.source, upload.valid_count, upload.invalid_count) == ("api", 1, 1)
    assert errors_of(upload) == [(2, "email", "Not a valid e-mail address.")]
    assert UploadRow.objects.get(upload=upload, row_number=1).value == D("1000.00")


def test_json_rows_with_unknown_fields_are_refused(campaign):
    with pytest.raises(UploadHeaderError) as exc:
        upload_create_from_rows(
            campaign=campaign, rows=[{"external_id": "E1", "x": 1}], actor=SYSTEM
        )
    assert exc.value.fields == {"unknown": ["x"]}
    assert nothing_stored()


def test_a_file_past_the_value_a_campaign_can_record_is_rejected(programme, make_campaign):
    # given: no budget, any value; two rows that together pass 999,999,999,999.99
    campaign = make_campaign(programme, reward=make_reward(denominations=()))
    huge = "600000000000.00"
    upload = create(campaign, csv_bytes(row(1, value=huge), row(2, value=huge)))
    # then: refused as a whole, nothing counted
    assert upload.status == "rejected"
    assert (
        upload.file_errors[0]["message"]
        == "The file's valid rows total 1200000000000.00 INR, more than the campaign's remaining "
        "value it can record of 999999999999.99 INR."
    )
    assert Campaign.objects.get(pk=campaign.pk).issued_value == 0
