from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from campaigns.codes import ALPHABET, CodeGenerator, is_well_formed, normalize
from campaigns.models import Voucher
from campaigns.services.campaigns import campaign_transition
from campaigns.services.codes import codes_generate, codes_import
from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent, Job, OutboxMessage
from plum.services.jobs import job_run
from tests.campaigns.builders import fill_pool, make_campaign

pytestmark = pytest.mark.django_db


# --- the code format ----------------------------------------------------------------------


def test_generated_codes_use_the_unambiguous_alphabet_and_carry_60_bits():
    codes = CodeGenerator(prefix="DVW", length=13).generate(2000)
    assert len(set(codes)) == 2000
    assert all(c.startswith("DVW") and len(c) == 17 and is_well_formed(c) for c in codes)
    assert not set("".join(codes)) & set("0O1IL")
    assert 13 * 4.95 >= 60  # log2(31) bits per character


def test_every_single_typo_and_neighbour_swap_is_caught():
    code = CodeGenerator(prefix="AB").generate(1)[0]
    typos = [
        code[:i] + ch + code[i + 1 :] for i in range(len(code)) for ch in ALPHABET if ch != code[i]
    ]
    swaps = [
        code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        for i in range(len(code) - 1)
        if code[i] != code[i + 1]
    ]
    assert [t for t in typos + swaps if is_well_formed(t)] == []


def test_normalize_accepts_what_people_type():
    assert normalize(" abcd-efgh jk ") == "ABCDEFGHJK"


@pytest.mark.parametrize(("prefix", "length"), [("O0", 13), ("A", 29), ("", 40)])
def test_bad_formats_are_refused(prefix, length):
    with pytest.raises(ValueError):
        CodeGenerator(prefix=prefix, length=length)


# --- generation -------------------------------------------------------------------------


def test_generation_job_fills_the_pool_audits_once_and_emits_one_event(programme):
    # given
    campaign = make_campaign(programme, code_prefix="DVW")
    # when
    job = fill_pool(campaign, 2500)
    # then
    vouchers = Voucher.objects.filter(campaign=campaign)
    assert (job.status, job.done, job.total, job.result["generated"]) == (
        "succeeded",
        2500,
        2500,
        2500,
    )
    assert vouchers.count() == 2500
    assert set(
        vouchers.values_list("status", "is_test", "face_value", "programme_id").distinct()
    ) == {("available", False, Decimal("500.00"), programme.pk)}
    assert all(
        is_well_formed(c) and c.startswith("DVW") for c in vouchers.values_list("code", flat=True)
    )
    assert AuditEvent.objects.filter(action="voucher.generate").count() == 1
    events = OutboxMessage.objects.filter(kind="event", payload__type="voucher.generated")
    assert [e.payload["data"]["count"] for e in events] == [2500]
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (0, Decimal("0"))


def test_test_codes_are_flagged_test(programme):
    campaign = make_campaign(programme)
    fill_pool(campaign, 10, is_test=True)
    assert set(Voucher.objects.values_list("is_test", flat=True)) == {True}


def test_generation_runs_once_however_often_its_task_is_delivered(programme):
    campaign = make_campaign(programme)
    job = fill_pool(campaign, 100)
    assert job_run(job_id=job.pk) is None
    assert Voucher.objects.filter(campaign=campaign).count() == 100


@pytest.mark.parametrize("count", [0, -1, 1_000_001])
def test_generation_count_is_bounded(programme, count):
    campaign = make_campaign(programme)
    with pytest.raises(InvalidInputError):
        codes_generate(campaign=campaign, count=count, is_test=False, actor=SYSTEM)
    assert Job.objects.count() == 0


def test_an_ended_campaign_takes_no_codes(programme):
    campaign = make_campaign(programme)
    campaign_transition(campaign=campaign, action="end", actor=SYSTEM)
    with pytest.raises(InvalidInputError):
        codes_generate(campaign=campaign, count=5, is_test=False, actor=SYSTEM)


def test_generation_draws_again_when_a_code_already_exists(programme, monkeypatch):
    # given: the first draw repeats a code already in the pool
    campaign = make_campaign(programme)
    fill_pool(campaign, 1)
    existing = Voucher.objects.get(campaign=campaign).code
    real = CodeGenerator.generate
    calls = []

    def generate(self, count):
        calls.append(count)
        codes = real(self, count)
        return [existing, *codes[1:]] if len(calls) == 1 else codes

    monkeypatch.setattr(CodeGenerator, "generate", generate)
    # when
    job = fill_pool(campaign, 5)
    # then
    assert calls == [5, 1]
    assert (job.result["generated"], job.result["collisions_retried"]) == (5, 1)
    assert Voucher.objects.filter(campaign=campaign).count() == 6


# --- import -----------------------------------------------------------------------------


def test_import_takes_valid_rows_and_names_every_bad_one(programme):
    # given
    campaign = make_campaign(programme)
    fill_pool(campaign, 1)
    taken = Voucher.objects.get(campaign=campaign).code
    future = (timezone.now() + timedelta(days=9)).isoformat()
    text = "\n".join(
        [
            "\ufeffcode,value,expires_at",
            f"merchant-001,,{future}",
            "MERCHANT001,,",
            f"{taken},,",
            "M-2,1000.00,",
            "M-3,750.00,",
            "M-4,,2001-01-01T00:00:00+00:00",
            ",,",
        ]
    )
    # when
    result = codes_import(campaign=campaign, text=text, is_test=False, actor=SYSTEM)
    # then
    assert result == {
        "imported": 2,
        "errors": [
            {"row": 3, "column": "code", "message": "Duplicate of row 2."},
            {"row": 4, "column": "code", "message": "Already in Plum."},
            {"row": 6, "column": "value", "message": "Not a value this reward is sold at."},
            {"row": 7, "column": "expires_at", "message": "A future ISO 8601 time with a zone."},
            {"row": 8, "column": "code", "message": "A code of 1-64 characters."},
        ],
    }
    imported = dict(
        Voucher.objects.filter(code__in=["MERCHANT001", "M2"]).values_list("code", "face_value")
    )
    assert imported == {"MERCHANT001": Decimal("500.00"), "M2": Decimal("1000.00")}


@pytest.mark.parametrize("header", ["voucher\nX", "code,colour\nX,red", ""])
def test_import_refuses_a_wrong_header_and_writes_nothing(programme, header):
    campaign = make_campaign(programme)
    with pytest.raises(InvalidInputError):
        codes_import(campaign=campaign, text=header, is_test=False, actor=SYSTEM)
    assert Voucher.objects.count() == 0


# --- database-enforced integrity ----------------------------------------------------------


@pytest.mark.postgres
def test_a_voucher_must_name_a_campaign_of_its_programme(programme, other_programme):
    # given
    campaign = make_campaign(programme)
    fill_pool(campaign, 1)
    voucher = Voucher.objects.get()
    # when / then: raw SQL cannot re-home a voucher or orphan it
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE campaigns_voucher SET programme_id = %s WHERE id = %s",
            [other_programme.pk, voucher.pk],
        )
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM campaigns_campaign WHERE id = %s", [campaign.pk])
    voucher.refresh_from_db()
    assert voucher.programme_id == programme.pk


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("column", "value"),
    [("balance", "-1"), ("balance", "600"), ("status", "'lost'"), ("issued_count", None)],
)
def test_check_constraints_hold_against_raw_sql(programme, column, value):
    # given
    campaign = make_campaign(programme, max_rewards=1)
    fill_pool(campaign, 1)
    voucher = Voucher.objects.get()
    if column == "issued_count":
        sql, params = "UPDATE campaigns_campaign SET issued_count = 2 WHERE id = %s", [campaign.pk]
    else:
        sql, params = f"UPDATE campaigns_voucher SET {column} = {value} WHERE id = %s", [voucher.pk]  # noqa: S608
    # when / then
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
