"""Voucher status by code, the voucher list (codes masked), redemption, flag and unflag."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.codes import ALPHABET, is_well_formed
from campaigns.models import Redemption, Voucher
from campaigns.services.vouchers import voucher_flag, voucher_redeem, vouchers_extend
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, OutboxMessage

pytestmark = pytest.mark.usefixtures("fresh_cache")

VOUCHERS = "/api/v1/vouchers"


def iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def mistype(code: str) -> str:
    """The code with its first character changed: the check character no longer matches."""
    replacement = ALPHABET[(ALPHABET.index(code[0]) + 1) % len(ALPHABET)]
    return replacement + code[1:]


def list_body(voucher: Voucher) -> dict:
    voucher.refresh_from_db()
    return {
        "id": voucher.pk,
        "code_masked": f"…{voucher.code[-4:]}",
        "code_last4": voucher.code[-4:],
        "programme": voucher.programme.slug,
        "campaign": voucher.campaign_id,
        "status": voucher.status,
        "face_value": f"{voucher.face_value:.2f}",
        "balance": f"{voucher.balance:.2f}",
        "currency": voucher.currency,
        "expires_at": iso(voucher.expires_at) if voucher.expires_at else None,
        "is_test": voucher.is_test,
        "member": voucher.member.external_id if voucher.member else None,
        "issued_at": iso(voucher.issued_at) if voucher.issued_at else None,
        "created_at": iso(voucher.created_at),
        "updated_at": iso(voucher.updated_at),
    }


def detail_body(voucher: Voucher) -> dict:
    body = list_body(voucher)
    return {
        "code": voucher.code,
        **body,
        "redemptions": [
            {
                "id": r.pk,
                "amount": f"{r.amount:.2f}",
                "reference": r.reference,
                "balance_after": f"{r.balance_after:.2f}",
                "redeemed_at": iso(r.redeemed_at),
            }
            for r in voucher.redemptions.order_by("-id")
        ],
    }


def not_found_body() -> dict:
    return {"error": {"code": "voucher_not_found", "message": "No such voucher.", "fields": {}}}


# --- status by code --------------------------------------------------------------------------


@pytest.mark.django_db
def test_status_by_code_shows_the_whole_voucher_and_its_redemptions(
    client_api, campaign, member, make_voucher
):
    # given
    voucher = make_voucher(campaign, member)
    voucher_redeem(voucher=voucher, amount=Decimal("100.00"), reference="POS-1", actor=SYSTEM)
    voucher_redeem(voucher=voucher, amount=Decimal("50.00"), reference="POS-2", actor=SYSTEM)
    # when
    response = client_api.get(f"{VOUCHERS}/{voucher.code}")
    # then
    assert response.status_code == 200
    assert response.json() == detail_body(voucher)
    body = response.json()
    assert (body["status"], body["balance"], body["member"], body["campaign"]) == (
        "partially_redeemed",
        "350.00",
        "EMP-001",
        campaign.pk,
    )
    assert [r["reference"] for r in body["redemptions"]] == ["POS-2", "POS-1"]


@pytest.mark.django_db
def test_status_by_code_accepts_the_code_as_people_type_it(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    typed = "-".join([voucher.code[:5], voucher.code[5:]]).lower()
    # when
    response = client_api.get(f"{VOUCHERS}/{typed}/")
    # then
    assert response.status_code == 200
    assert response.json()["code"] == voucher.code


@pytest.mark.django_db
def test_status_shows_the_expiry_the_campaign_gave(
    client_api, make_campaign, programme, make_voucher
):
    # given
    voucher = make_voucher(make_campaign(programme, expiry_days=30))
    # when
    response = client_api.get(f"{VOUCHERS}/{voucher.code}")
    # then
    assert response.json()["expires_at"] == iso(voucher.issued_at + timedelta(days=30))


@pytest.mark.django_db
def test_an_unknown_code_and_another_programmes_code_get_the_same_404(
    client_api, campaign, other_campaign, make_voucher
):
    # given: Plum's codes always carry a valid check character
    theirs = make_voucher(other_campaign)
    unknown = make_voucher(campaign).code
    Voucher.objects.filter(code=unknown).delete()
    # when
    other_programme = client_api.get(f"{VOUCHERS}/{theirs.code}")
    never_issued = client_api.get(f"{VOUCHERS}/{unknown}")
    # then
    assert is_well_formed(theirs.code)
    assert other_programme.status_code == never_issued.status_code == 404
    assert other_programme.json() == never_issued.json() == not_found_body()


@pytest.mark.django_db
def test_a_mistyped_code_says_so(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    # when
    response = client_api.get(f"{VOUCHERS}/{mistype(voucher.code)}")
    # then
    assert not is_well_formed(mistype(voucher.code))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "voucher_code_mistyped"


@pytest.mark.django_db
def test_a_failed_lookup_is_audited_with_the_last_4_characters(
    client_api, campaign, other_campaign, make_voucher
):
    # given
    theirs = make_voucher(other_campaign)
    # when
    client_api.get(f"{VOUCHERS}/{theirs.code}")
    # then
    event = AuditEvent.objects.get(action="voucher.lookup_failed")
    assert (
        event.actor_type,
        event.actor_client_id,
        event.object_type,
        event.object_id,
        event.programme_id,
        event.changes,
    ) == (
        "api_client",
        client_api.plum_client.pk,
        "campaigns.voucher",
        "",
        None,
        {"code_last4": [None, theirs.code[-4:]]},
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("is_test_key", "visible", "hidden"), [(False, "live", "test"), (True, "test", "live")]
)
def test_live_keys_see_live_vouchers_and_test_keys_test_ones(
    make_api, programme, campaign, make_voucher, is_test_key, visible, hidden
):
    # given
    vouchers = {
        "live": make_voucher(campaign),
        "test": make_voucher(campaign, is_test=True),
    }
    api = make_api([programme], is_test=is_test_key)
    # when
    seen = api.get(f"{VOUCHERS}/{vouchers[visible].code}")
    unseen = api.get(f"{VOUCHERS}/{vouchers[hidden].code}")
    listed = api.get(VOUCHERS)
    # then
    assert seen.status_code == 200
    assert seen.json()["is_test"] is is_test_key
    assert unseen.status_code == 404
    assert unseen.json() == not_found_body()
    assert [v["id"] for v in listed.json()["results"]] == [vouchers[visible].pk]


# --- list ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_list_masks_every_code(client_api, campaign, other_campaign, make_voucher, make_pool):
    # given
    issued = make_voucher(campaign)
    pooled = make_pool(campaign, 2)
    make_voucher(other_campaign)
    # when
    response = client_api.get(VOUCHERS)
    # then
    assert response.status_code == 200
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [list_body(v) for v in sorted([issued, *pooled], key=lambda v: -v.pk)],
    }
    for voucher in [issued, *pooled]:
        assert voucher.code.encode() not in response.content


@pytest.fixture
def assorted(campaign, make_campaign, programme, make_voucher, make_pool):
    """Vouchers of two campaigns in several states and expiries."""
    second = make_campaign(programme, name="Second", expiry_days=10)
    soon = make_voucher(second)
    redeemed = make_voucher(campaign)
    voucher_redeem(voucher=redeemed, amount=Decimal("500.00"), reference="R", actor=SYSTEM)
    later = make_voucher(campaign)
    vouchers_extend(
        vouchers=Voucher.objects.filter(pk=later.pk),
        expires_at=timezone.now() + timedelta(days=100),
        actor=SYSTEM,
    )
    test = make_voucher(campaign, is_test=True)
    (pooled,) = make_pool(campaign, 1)
    return {
        "campaign": campaign,
        "second": second,
        "soon": soon,
        "redeemed": redeemed,
        "later": later,
        "test": test,
        "pooled": pooled,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("campaign={second}", ["soon"]),
        ("campaign={campaign}", ["pooled", "test", "later", "redeemed"]),
        ("status=redeemed", ["redeemed"]),
        ("status=available", ["pooled"]),
        ("expires_before={in_50_days}", ["soon"]),
        ("expires_after={in_50_days}", ["later"]),
        ("expires_after={now}&expires_before={in_200_days}", ["later", "soon"]),
        ("test=true", ["test"]),
        ("test=false&campaign={campaign}", ["pooled", "later", "redeemed"]),
        ("campaign=&status=", ["pooled", "test", "later", "redeemed", "soon"]),
    ],
)
def test_list_filters(client, make_user, programme, assorted, query, expected):
    # given: a programme manager's session sees live and test vouchers alike
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    now = timezone.now()
    query = query.format(
        second=assorted["second"].pk,
        campaign=assorted["campaign"].pk,
        now=iso(now),
        in_50_days=iso(now + timedelta(days=50)),
        in_200_days=iso(now + timedelta(days=200)),
    )
    # when
    response = client.get(f"{VOUCHERS}?{query}")
    # then
    assert response.status_code == 200
    assert [v["id"] for v in response.json()["results"]] == [assorted[k].pk for k in expected]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("status=gone", {"status": ['"gone" is not a valid choice.']}),
        ("campaign=x", {"campaign": ["A valid integer is required."]}),
        (
            "expires_before=tomorrow",
            {
                "expires_before": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        ("test=perhaps", {"test": ["Must be a valid boolean."]}),
    ],
)
def test_list_refuses_a_bad_filter(client_api, query, fields):
    # when
    response = client_api.get(f"{VOUCHERS}?{query}")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields


@pytest.mark.django_db
def test_a_test_key_lists_test_vouchers_only_whatever_the_filter(make_api, programme, assorted):
    # given
    api = make_api([programme], is_test=True)
    # when
    response = api.get(f"{VOUCHERS}?test=false")
    everything = api.get(VOUCHERS)
    # then
    assert response.json()["results"] == []
    assert [v["id"] for v in everything.json()["results"]] == [assorted["test"].pk]


@pytest.mark.django_db
def test_voucher_list_costs_the_same_queries_for_3_and_30_rows(client_api, campaign, make_voucher):
    # given
    for _ in range(3):
        make_voucher(campaign)
    client_api.get(VOUCHERS)  # the key's first use of the minute writes last_used_at
    with CaptureQueriesContext(connection) as few:
        assert len(client_api.get(VOUCHERS).json()["results"]) == 3
    for _ in range(27):
        make_voucher(campaign)
    # when
    with CaptureQueriesContext(connection) as many:
        assert len(client_api.get(VOUCHERS).json()["results"]) == 30
    # then
    assert len(many) == len(few)


# --- redeem ----------------------------------------------------------------------------------


def redeem(api, code, amount="100.00", reference="POS-1", **extra):
    return api.post(
        f"{VOUCHERS}/{code}/redeem",
        {"amount": amount, "reference": reference},
        format="json",
        **extra,
    )


@pytest.mark.django_db
def test_redeem_answers_201_with_the_redemption(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    # when
    response = redeem(client_api, voucher.code, "120.50", "POS-1")
    # then
    assert response.status_code == 201
    redemption = Redemption.objects.get()
    assert response.json() == {
        "id": redemption.pk,
        "code": voucher.code,
        "amount": "120.50",
        "currency": "INR",
        "reference": "POS-1",
        "balance_after": "379.50",
        "redeemed_at": iso(redemption.redeemed_at),
    }
    voucher.refresh_from_db()
    assert (voucher.balance, voucher.status) == (Decimal("379.50"), "partially_redeemed")
    assert (redemption.redeemed_by_client_id, redemption.actor_label) == (
        client_api.plum_client.pk,
        "api:Test client",
    )
    assert AuditEvent.objects.get(action="voucher.redeem").actor_client_id == (
        client_api.plum_client.pk
    )


@pytest.mark.django_db
def test_redeem_of_the_whole_balance_redeems_the_voucher(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    # when
    response = redeem(client_api, voucher.code, "500.00")
    # then
    assert response.json()["balance_after"] == "0.00"
    voucher.refresh_from_db()
    assert (voucher.balance, voucher.status) == (Decimal("0.00"), "redeemed")


@pytest.mark.django_db
def test_redeem_replayed_with_the_same_reference_answers_200_with_the_same_body(
    client_api, campaign, make_voucher
):
    # given
    voucher = make_voucher(campaign)
    first = redeem(client_api, voucher.code, "100.00", "POS-1")
    redeem(client_api, voucher.code, "50.00", "POS-2")
    # when
    replay = redeem(client_api, voucher.code, "100.00", "POS-1")
    # then
    assert (first.status_code, replay.status_code) == (201, 200)
    assert replay.json() == first.json()
    voucher.refresh_from_db()
    assert voucher.balance == Decimal("350.00")
    assert Redemption.objects.count() == 2
    assert OutboxMessage.objects.filter(payload__type="voucher.redeemed").count() == 2


@pytest.mark.django_db
def test_redeem_with_an_idempotency_key_replays_byte_for_byte(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    first = redeem(client_api, voucher.code, HTTP_IDEMPOTENCY_KEY="k-1")
    # when
    replay = redeem(client_api, voucher.code, HTTP_IDEMPOTENCY_KEY="k-1")
    # then
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.content == first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert Redemption.objects.count() == 1


def _as_issued(voucher):
    pass


def _expire(voucher):
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=timezone.now() - timedelta(seconds=1))


def _flag(voucher):
    voucher_flag(voucher=voucher, actor=SYSTEM, reason="fraud")


def _redeem_all(voucher):
    voucher_redeem(voucher=voucher, amount=voucher.face_value, reference="ALL", actor=SYSTEM)


def _reuse(voucher):
    voucher_redeem(voucher=voucher, amount=Decimal("10.00"), reference="POS-1", actor=SYSTEM)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setup", "amount", "status", "error"),
    [
        (
            _as_issued,
            "500.01",
            409,
            {
                "code": "insufficient_balance",
                "message": "The amount is more than the voucher's remaining balance.",
                "fields": {},
                "balance": "500.00",
            },
        ),
        (
            _expire,
            "100.00",
            409,
            {"code": "voucher_expired", "message": "The voucher has expired.", "fields": {}},
        ),
        (
            _flag,
            "100.00",
            409,
            {
                "code": "voucher_flagged",
                "message": "The voucher is flagged and cannot be redeemed until it is unflagged.",
                "fields": {},
            },
        ),
        (
            _redeem_all,
            "100.00",
            409,
            {
                "code": "voucher_not_redeemable",
                "message": "The voucher cannot be redeemed in its current state.",
                "fields": {},
                "status": "redeemed",
            },
        ),
        (
            _reuse,
            "100.00",
            409,
            {
                "code": "redemption_reference_reused",
                "message": "This redemption reference was already used with a different amount.",
                "fields": {},
            },
        ),
    ],
)
def test_redeem_refusals_have_distinct_codes_and_change_nothing(
    client_api, campaign, make_voucher, snapshot, setup, amount, status, error
):
    # given
    voucher = make_voucher(campaign)
    setup(voucher)
    before = snapshot()
    # when
    response = redeem(client_api, voucher.code, amount, "POS-1")
    # then
    assert response.status_code == status
    body = response.json()["error"]
    body.pop("expires_at", None)  # voucher_expired also says when
    assert body == error
    assert snapshot() == before


@pytest.mark.django_db
def test_redeem_of_an_expired_voucher_says_when_it_expired(client_api, campaign, make_voucher):
    # given
    voucher = make_voucher(campaign)
    _expire(voucher)
    voucher.refresh_from_db()
    # when
    response = redeem(client_api, voucher.code)
    # then
    assert response.json()["error"]["expires_at"] == voucher.expires_at.isoformat()


@pytest.mark.django_db
def test_a_pool_code_cannot_be_redeemed(client_api, campaign, make_pool, snapshot):
    # given
    (pooled,) = make_pool(campaign, 1)
    before = snapshot()
    # when
    response = redeem(client_api, pooled.code)
    # then
    assert response.status_code == 409
    assert (response.json()["error"]["code"], response.json()["error"]["status"]) == (
        "voucher_not_redeemable",
        "available",
    )
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"amount": "0.00", "reference": "R"},
            {"amount": ["Ensure this value is greater than or equal to 0.01."]},
        ),
        (
            {"amount": "-5", "reference": "R"},
            {"amount": ["Ensure this value is greater than or equal to 0.01."]},
        ),
        (
            {"amount": "1.001", "reference": "R"},
            {"amount": ["Ensure that there are no more than 2 decimal places."]},
        ),
        ({"amount": "10"}, {"reference": ["This field is required."]}),
        ({"amount": "10", "reference": ""}, {"reference": ["This field may not be blank."]}),
        (
            {"amount": "10", "reference": "R" * 121},
            {"reference": ["Ensure this field has no more than 120 characters."]},
        ),
        ({"amount": "10", "reference": "R", "balance": "0"}, {"balance": ["Unknown field."]}),
    ],
)
def test_redeem_refuses_bad_input(client_api, campaign, make_voucher, snapshot, body, fields):
    # given
    voucher = make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.post(f"{VOUCHERS}/{voucher.code}/redeem", body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before


@pytest.mark.django_db
def test_a_test_key_redeems_test_vouchers_and_never_live_ones(
    make_api, programme, campaign, make_voucher, snapshot
):
    # given
    api = make_api([programme], is_test=True)
    test_voucher = make_voucher(campaign, is_test=True)
    live_voucher = make_voucher(campaign)
    campaign.refresh_from_db()
    counters = (campaign.issued_count, campaign.issued_value)
    # when
    redeemed = redeem(api, test_voucher.code, "100.00")
    refused = redeem(api, live_voucher.code, "100.00")
    # then
    assert redeemed.status_code == 201
    assert refused.status_code == 404
    assert refused.json() == not_found_body()
    live_voucher.refresh_from_db()
    assert live_voucher.balance == Decimal("500.00")
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == counters


# --- flag and unflag -------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("scopes", [["manage"], ["support"]])
def test_flag_with_manage_or_support_blocks_redemption_until_unflagged(
    make_api, programme, campaign, make_voucher, scopes
):
    # given
    api = make_api([programme], scopes=scopes)
    pos = make_api([programme], scopes=["redeem"])
    voucher = make_voucher(campaign)
    # when
    flagged = api.post(
        f"{VOUCHERS}/{voucher.code}/flag", {"reason": "Reported stolen"}, format="json"
    )
    refused = redeem(pos, voucher.code)
    unflagged = api.post(f"{VOUCHERS}/{voucher.code}/unflag")
    accepted = redeem(pos, voucher.code)
    # then
    assert flagged.status_code == 200
    assert flagged.json()["status"] == "flagged"
    assert flagged.json()["code"] == voucher.code
    assert refused.json()["error"]["code"] == "voucher_flagged"
    assert unflagged.status_code == 200
    assert unflagged.json()["status"] == "active"
    assert accepted.status_code == 201
    flag_event = AuditEvent.objects.get(action="voucher.flag")
    assert (flag_event.actor_client_id, flag_event.changes) == (
        api.plum_client.pk,
        {"status": ["active", "flagged"], "reason": [None, "Reported stolen"]},
    )
    assert AuditEvent.objects.get(action="voucher.unflag").changes == {
        "status": ["flagged", "active"]
    }


@pytest.mark.django_db
def test_unflag_returns_a_partly_redeemed_voucher_to_partly_redeemed(
    client_api, campaign, make_voucher
):
    # given
    voucher = make_voucher(campaign)
    voucher_redeem(voucher=voucher, amount=Decimal("1.00"), reference="R", actor=SYSTEM)
    _flag(voucher)
    # when
    response = client_api.post(f"{VOUCHERS}/{voucher.code}/unflag", {}, format="json")
    # then
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["balance"]) == (
        "partially_redeemed",
        "499.00",
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "body", "setup", "code"),
    [
        ("flag", {"reason": "again"}, _flag, "invalid_transition"),
        ("flag", {"reason": "again"}, _redeem_all, "invalid_transition"),
        ("unflag", {}, _as_issued, "voucher_not_redeemable"),
    ],
)
def test_flag_and_unflag_from_the_wrong_state_are_refused(
    client_api, campaign, make_voucher, snapshot, action, body, setup, code
):
    # given
    voucher = make_voucher(campaign)
    setup(voucher)
    before = snapshot()
    # when
    response = client_api.post(f"{VOUCHERS}/{voucher.code}/{action}", body, format="json")
    # then
    assert response.status_code == 409
    assert response.json()["error"]["code"] == code
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "body", "fields"),
    [
        ("flag", {}, {"reason": ["This field is required."]}),
        ("flag", {"reason": ""}, {"reason": ["This field may not be blank."]}),
        ("flag", {"reason": "x", "status": "active"}, {"status": ["Unknown field."]}),
        ("unflag", {"status": "active"}, {"status": ["Unknown field."]}),
    ],
)
def test_flag_and_unflag_refuse_bad_input(
    client_api, campaign, make_voucher, snapshot, action, body, fields
):
    # given
    voucher = make_voucher(campaign)
    before = snapshot()
    # when
    response = client_api.post(f"{VOUCHERS}/{voucher.code}/{action}", body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert snapshot() == before
