"""The batch endpoint's shortcuts give exactly what they stand for:

- `issuance_fast` accepts an item only when IssuanceInput accepts it, with the same validated
  data (it hands everything else to IssuanceInput, which words the refusal);
- `recipient_check_fast` likewise for `recipient_check` (the member model's field rules);
- `BatchOrderRenderer` renders byte for byte what OrderRenderer and OrderOutput render;
- the batch's audit hashes are `event_content_hash`'s, for every actor and request shape;
- plum.bulk's array insert writes what its VALUES insert writes, and truncates nothing."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DataError, transaction
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from campaigns.models import Voucher
from orders.api.batch import BatchOrderRenderer, issuance_fast
from orders.api.orders import IssuanceInput, OrderOutput, OrderRenderer
from orders.errors import RecipientInvalidError
from orders.models import Order
from orders.services import IssuanceRequest, order_issue_batch
from orders.services.batch import recipient_check, recipient_check_fast
from plum import context
from plum.actors import SYSTEM
from plum.bulk import VALUES_MAX_ROWS, row_for, rows_insert
from plum.models import AuditEvent, Member, OutboxMessage
from plum.services.audit import audit_verify, event_content_hash
from tests.campaigns.builders import fill_pool
from tests.factories import MemberFactory, UserFactory

D = Decimal


def _drf(raw):
    validator = IssuanceInput()
    validator.initial_data = raw
    try:
        return "ok", json.loads(json.dumps(validator.run_validation(raw), default=str))
    except exceptions.ValidationError as exc:
        return "refused", exc.detail


def _plain(fields):
    return json.loads(json.dumps(fields, default=str))


R = {"external_id": "EMP-1"}
GOOD_ITEMS = [
    {"campaign": 1, "recipient": R},
    {"campaign": 7, "recipient": {**R, "email": "a@example.com"}, "reference": "ref-1"},
    {"campaign": 7, "recipient": {"external_id": "  EMP-2 ", "name": " Asha  "}},
    {
        "campaign": 3,
        "recipient": {
            "external_id": "E" * 120,
            "name": "N" * 200,
            "email": "x" * 240 + "@example.com",
            "phone": "+14155550123",
            "country": "IN",
            "preferred_channel": "sms",
        },
        "reference": "r" * 120,
    },
    {"campaign": 3, "recipient": {**R, "name": "", "email": "", "phone": "", "country": ""}},
    {"campaign": 3, "recipient": {**R, "preferred_channel": ""}, "reference": ""},
    {"campaign": 3, "recipient": {**R, "name": "   "}, "reference": "  padded  "},
    {"campaign": 3, "recipient": R, "value": "1000.00"},
    {"campaign": 3, "recipient": R, "value": "12.5"},
    {"campaign": 3, "recipient": R, "value": 250},
    {"campaign": 3, "recipient": {**R, "name": "Zoë Ünïcode ✓"}},
    # shapes the fast path leaves to DRF, which accepts them
    {"campaign": "3", "recipient": R},
    {"campaign": 3.0, "recipient": R},
    {"campaign": 3, "recipient": {**R, "name": 5}},
    {"campaign": 3, "recipient": {"external_id": 12345}},
    {"campaign": 3, "recipient": R, "reference": 77},
]
BAD_ITEMS = [
    [],
    "x",
    None,
    {},
    {"recipient": R},
    {"campaign": 1},
    {"campaign": 0, "recipient": R},
    {"campaign": -1, "recipient": R},
    {"campaign": True, "recipient": R},
    {"campaign": None, "recipient": R},
    {"campaign": "one", "recipient": R},
    {"campaign": 1, "recipient": R, "extra": 1},
    {"campaign": 1, "recipient": None},
    {"campaign": 1, "recipient": "EMP-1"},
    {"campaign": 1, "recipient": {}},
    {"campaign": 1, "recipient": {"external_id": ""}},
    {"campaign": 1, "recipient": {"external_id": "   "}},
    {"campaign": 1, "recipient": {"external_id": None}},
    {"campaign": 1, "recipient": {"external_id": "E" * 121}},
    {"campaign": 1, "recipient": {"external_id": "E\x00"}},
    {"campaign": 1, "recipient": {"external_id": "E\ud800"}},
    {"campaign": 1, "recipient": {**R, "name": "N" * 201}},
    {"campaign": 1, "recipient": {**R, "email": "x" * 255}},
    {"campaign": 1, "recipient": {**R, "phone": "+" + "1" * 32}},
    {"campaign": 1, "recipient": {**R, "country": "INDIAINDI"}},
    {"campaign": 1, "recipient": {**R, "preferred_channel": "pigeon"}},
    {"campaign": 1, "recipient": {**R, "preferred_channel": " sms"}},
    {"campaign": 1, "recipient": {**R, "preferred_channel": None}},
    {"campaign": 1, "recipient": {**R, "name": None}},
    {"campaign": 1, "recipient": {**R, "name": True}},
    {"campaign": 1, "recipient": {**R, "name": ["a"]}},
    {"campaign": 1, "recipient": {**R, "unknown": "x"}},
    {"campaign": 1, "recipient": R, "reference": "r" * 121},
    {"campaign": 1, "recipient": R, "reference": None},
    {"campaign": 1, "recipient": R, "reference": "a\x00"},
    {"campaign": 1, "recipient": R, "value": None},
    {"campaign": 1, "recipient": R, "value": "0"},
    {"campaign": 1, "recipient": R, "value": "0.001"},
    {"campaign": 1, "recipient": R, "value": "1.234"},
    {"campaign": 1, "recipient": R, "value": "1" * 13},
    {"campaign": 1, "recipient": R, "value": "NaN"},
    {"campaign": 1, "recipient": R, "value": "ten"},
    {"campaign": 1, "recipient": R, "value": True},
]


@pytest.mark.parametrize("raw", GOOD_ITEMS + BAD_ITEMS)
def test_the_fast_item_check_agrees_with_issuance_input(raw):
    # given
    value_field = IssuanceInput().fields["value"]
    # when
    fast = issuance_fast(raw, value_field)
    outcome, drf = _drf(raw)
    # then: accepted by the fast path only when IssuanceInput accepts it, with the same data
    if fast is not None:
        assert (outcome, _plain(fast)) == ("ok", drf)


@pytest.mark.parametrize("raw", GOOD_ITEMS[:11])
def test_the_common_shapes_take_the_fast_path(raw):
    assert issuance_fast(raw, IssuanceInput().fields["value"]) is not None


@pytest.mark.parametrize("raw", BAD_ITEMS)
def test_every_bad_item_is_refused_by_issuance_input(raw):
    # (so that the table above really holds refusals the fast path must not accept)
    assert _drf(raw)[0] == "refused"


RECIPIENTS = [
    {"external_id": "E1"},
    {"external_id": " E1 ", "name": "Asha", "campaign": 3},
    {"external_id": "E1", "email": "a@example.com", "phone": "+919876543210", "country": "IN"},
    {"external_id": "E1", "preferred_channel": "whatsapp", "name": ""},
    {"external_id": "E" * 120, "name": "N" * 200},
    {"external_id": "E1", "email": "x" * 240 + "@example.com"},
    {"external_id": "E" * 121},
    {"external_id": "E1", "name": "N" * 201},
    {"external_id": "E1", "email": "nope"},
    {"external_id": "E1", "email": "a@b"},
    {"external_id": "E1", "email": "a@localhost"},
    {"external_id": "E1", "phone": "0987654321"},
    {"external_id": "E1", "phone": "+14155550123\n"},
    {"external_id": "E1", "phone": "+1" + "2" * 15},
    {"external_id": "E1", "country": "India"},
    {"external_id": "E1", "country": "in"},
    {"external_id": "E1", "preferred_channel": "fax"},
    {"external_id": "E1", "name": 5},
    {"external_id": ""},
    {"external_id": "  "},
    {},
]


@pytest.mark.parametrize("recipient", RECIPIENTS)
def test_the_fast_recipient_check_agrees_with_recipient_check(recipient):
    # when
    fast = recipient_check_fast(recipient)
    try:
        slow = ("ok", recipient_check(recipient))
    except RecipientInvalidError as exc:
        slow = ("refused", exc.fields)
    # then
    if fast is not None:
        assert slow == ("ok", fast)
    else:
        # every refusal and every unusual value goes the slow way
        assert slow[0] == "refused" or not all(type(v) is str for v in recipient.values())


def test_the_fast_recipient_check_takes_the_common_shapes():
    assert all(recipient_check_fast(r) is not None for r in RECIPIENTS[:6])


# --- rendering ---------------------------------------------------------------------------------


def _render_bytes(data) -> bytes:
    return JSONRenderer().render(data)


@pytest.mark.django_db
def test_the_batch_renderer_gives_order_renderer_s_bytes_for_every_shape(programme, make_campaign):
    # given: generated codes, pooled codes with an expiry, a held campaign, variable values
    generated = make_campaign(programme, expiry_days=30)
    pooled = make_campaign(
        programme, code_source="pool", expiry_days=None, expiry_date=timezone.now() + timedelta(3)
    )
    fill_pool(pooled, 2)
    held = make_campaign(programme, approval_mode="manual")
    MemberFactory(programme=programme, external_id="OLD", email="old@example.com")
    requests = [
        IssuanceRequest(campaign=generated, recipient={"external_id": "G1", "email": "g@x.io"}),
        IssuanceRequest(campaign=generated, recipient={"external_id": "G2"}, reference="r-2"),
        IssuanceRequest(campaign=generated, recipient={"external_id": "G3"}, value=D("1000.00")),
        IssuanceRequest(campaign=pooled, recipient={"external_id": "P1", "phone": "+919876543210"}),
        IssuanceRequest(campaign=pooled, recipient={"external_id": "OLD"}),
        IssuanceRequest(campaign=held, recipient={"external_id": "H1"}),
    ]
    results = order_issue_batch(requests=requests, source="api", actor=SYSTEM)
    tests = order_issue_batch(
        requests=[IssuanceRequest(campaign=generated, recipient={"external_id": "T1"})],
        source="upload",
        actor=SYSTEM,
        is_test=True,
    )
    orders = [*results, *tests]
    assert [o.status for o in orders] == ["completed"] * 5 + ["pending", "completed"]
    # when
    fast = BatchOrderRenderer()
    rendered = [_render_bytes(fast.render(o)) for o in orders]
    # then: the same bytes as OrderRenderer on the same objects, and as OrderOutput on the rows
    # read back from the database
    reference = OrderRenderer()
    assert rendered == [_render_bytes(reference.render(o)) for o in orders]
    stored = {o.pk: o for o in Order.objects.filter(pk__in=[o.pk for o in orders])}
    assert rendered == [_render_bytes(OrderOutput(stored[o.pk]).data) for o in orders]
    assert {json.loads(r)["delivery_status"] for r in rendered} == {"pending", "failed"}


# --- audit -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("ip", [None, "10.0.0.7", "2001:db8::1"])
@pytest.mark.parametrize("as_user", [False, True])
def test_the_batch_audit_hashes_are_event_content_hash(campaign, programme, ip, as_user):
    # given: a request context, a user or system actor, and a member whose details change
    MemberFactory(programme=programme, external_id="OLD", name="Old")
    actor = UserFactory() if as_user else SYSTEM
    token = context.bind(context.RequestContext(request_id="req-1", ip=ip))
    try:
        # when
        results = order_issue_batch(
            requests=[
                IssuanceRequest(campaign=campaign, recipient={"external_id": "OLD", "name": "Ñ"}),
                IssuanceRequest(campaign=campaign, recipient={"external_id": "NEW", "name": "✓"}),
            ],
            source="api",
            actor=actor,
        )
    finally:
        context.reset(token)
    # then: every event's stored hash is what event_content_hash computes from the stored row
    assert [r.status for r in results] == ["completed", "completed"]
    events = list(AuditEvent.objects.all())
    assert {e.action for e in events} >= {
        "member.update",
        "member.create",
        "voucher.issue",
        "order.create",
    }
    assert all(e.hash == event_content_hash(e) for e in events)
    assert audit_verify()[2] == []


# --- plum.bulk ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_array_insert_writes_what_the_values_insert_writes(programme):
    # given: the same rows, a few (VALUES) and many (arrays)
    def rows(tag, n):
        return [
            row_for(
                OutboxMessage,
                kind=f"k-{tag}",
                programme_id=programme.pk if i % 2 else None,
                payload={"i": i, "text": "ü'\"\\", "none": None, "list": [1, "a"]},
                next_attempt_at=timezone.now(),
            )
            for i in range(n)
        ]

    few, many = rows("few", VALUES_MAX_ROWS), rows("many", VALUES_MAX_ROWS * 3)
    # when
    rows_insert(OutboxMessage, few, returning_pk=False)
    rows_insert(OutboxMessage, many, returning_pk=False)

    # then
    def stored(kind):
        return list(
            OutboxMessage.objects.filter(kind=kind)
            .order_by("created_at")
            .values_list("id", "programme_id", "payload", "status", "attempts", "created_at")
        )

    assert [r[:5] for r in stored("k-many")] == [
        (o.id, o.programme_id, o.payload, "pending", 0) for o in many
    ]
    assert [r[5] for r in stored("k-many")] == [o.created_at for o in many]
    assert [r[:5] for r in stored("k-few")] == [
        (o.id, o.programme_id, o.payload, "pending", 0) for o in few
    ]


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_array_insert_refuses_an_over_long_value_rather_than_truncating(programme):
    members = [
        Member(programme=programme, external_id=f"E{i}", country="INDIA" if i == 5 else "IN")
        for i in range(VALUES_MAX_ROWS + 2)
    ]
    with pytest.raises(DataError), transaction.atomic():
        rows_insert(Member, members, returning_pk=True)
    assert Member.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_array_insert_skips_conflicts_and_returns_the_inserted(programme):
    # given: one external id taken
    MemberFactory(programme=programme, external_id="E3")
    members = [
        Member(programme=programme, external_id=e)
        for e in ["E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8", "E9", "E10"]
    ]
    # when
    inserted = rows_insert(
        Member, members, returning_pk=True, conflict=("programme", "external_id")
    )
    # then
    assert [m.external_id for m in inserted] == [
        "E1", "E2", "E4", "E5", "E6", "E7", "E8", "E9", "E10"
    ]  # fmt: skip
    assert members[2].pk is None
    assert {m.pk: m.external_id for m in inserted} == dict(
        Member.objects.exclude(external_id="E3").values_list("pk", "external_id")
    )


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_array_insert_keeps_every_text_as_given(programme):
    # given: texts an array literal must quote
    names = ["NULL", "", " ", "a,b", "{x}", 'say "hi"', "back\\slash", '\\"', "ü ✓ 'q'", "\t\n"]
    members = [
        Member(programme=programme, external_id=f"T{i}", name=name, email="")
        for i, name in enumerate(names)
    ]
    # when
    rows_insert(Member, members, returning_pk=True)
    # then
    stored = dict(Member.objects.values_list("external_id", "name"))
    assert [stored[f"T{i}"] for i in range(len(names))] == names
    assert all(m.pk for m in members)


@pytest.mark.django_db
@pytest.mark.parametrize("approval_mode", ["auto", "manual"])
def test_the_batch_s_hand_encoded_payloads_and_changes_say_what_the_dicts_say(
    programme, make_campaign, approval_mode
):
    # given
    campaign = make_campaign(programme, approval_mode=approval_mode)
    # when
    (order,) = order_issue_batch(
        requests=[
            IssuanceRequest(
                campaign=campaign, recipient={"external_id": 'Q"1\\ü'}, reference='r"\\✓'
            )
        ],
        source="upload",
        actor=SYSTEM,
    )
    # then: the order events carry what event_emit's dicts carry
    data = {
        "booking_id": order.booking_id,
        "order_id": order.pk,
        "campaign_id": campaign.pk,
        "member_external_id": 'Q"1\\ü',
        "value": "500.00",
        "currency": order.currency,
        "source": "upload",
        "status": order.status,
        "approval_state": order.approval_state,
        "is_test": False,
        "reference": 'r"\\✓',
    }
    second = (
        {"order.completed": {**data, "voucher_id": order.voucher_id}}
        if approval_mode == "auto"
        else {"order.pending_approval": data}
    )
    payloads = {
        m.payload["type"]: m.payload["data"]
        for m in OutboxMessage.objects.filter(payload__data__order_id=order.pk)
        if m.payload["type"].startswith("order.")
    }
    assert payloads == {"order.created": data, **second}
    # and the audit events the changes audit_log's dicts hold
    changes = dict(AuditEvent.objects.values_list("action", "changes"))
    assert changes["order.create"] == {
        "booking_id": [None, order.booking_id],
        "status": [None, order.status],
        "approval_state": [None, order.approval_state],
        "campaign": [None, campaign.pk],
        "member": [None, order.member_id],
        "value": [None, "500.00"],
        "source": [None, "upload"],
        "voucher": [None, order.voucher_id],
        "is_test": [None, False],
    }
    if approval_mode == "auto":
        assert changes["voucher.issue"] == {
            "status": [None, "active"],
            "member": [None, order.member_id],
        }
    assert audit_verify()[2] == []


TEXTS = ["NULL", "", " ", "a,b", "{x}", 'say "hi"', "back\\slash", '\\"', "ü ✓ 'q'", "\t\n"]


def test_the_all_strings_array_literal_is_the_element_by_element_one():
    from plum.bulk import _array_literal, _quoted

    assert _array_literal(TEXTS, "text") == "{" + ",".join(map(_quoted, TEXTS)) + "}"
    assert _array_literal([*TEXTS, None], "text") == (
        "{" + ",".join([*map(_quoted, TEXTS), "NULL"]) + "}"
    )


@pytest.mark.django_db
@pytest.mark.postgres
def test_the_array_insert_refuses_a_nul_as_the_driver_does(programme):
    members = [
        Member(programme=programme, external_id=f"N{i}", name="a\x00b" if i == 3 else "ok")
        for i in range(VALUES_MAX_ROWS + 2)
    ]
    with pytest.raises(ValueError, match="NUL"), transaction.atomic():
        rows_insert(Member, members, returning_pk=True)
    assert Member.objects.count() == 0


@pytest.mark.django_db
def test_colliding_codes_and_booking_ids_are_drawn_again_and_everything_names_the_new_ones(
    campaign, monkeypatch
):
    # given: an order holding a booking id and a code; the next draws offer those first, and
    # a booking id and a code twice within the batch
    from campaigns.codes import CodeGenerator
    from orders.services import batch as batch_service

    first = order_issue_batch(
        requests=[IssuanceRequest(campaign=campaign, recipient={"external_id": "E0"})],
        source="api",
        actor=SYSTEM,
    )[0]
    real_booking_ids, real_generate = batch_service.booking_ids_new, CodeGenerator.generate
    bookings = iter([[first.booking_id, "PLM-AAAA-AAAA", "PLM-AAAA-AAAA"]])
    codes = iter([[first.voucher.code, "SAMECODE-1", "SAMECODE-1"]])
    monkeypatch.setattr(
        batch_service, "booking_ids_new", lambda n: next(bookings, None) or real_booking_ids(n)
    )
    monkeypatch.setattr(
        CodeGenerator, "generate", lambda self, n: next(codes, None) or real_generate(self, n)
    )
    # when
    results = order_issue_batch(
        requests=[
            IssuanceRequest(campaign=campaign, recipient={"external_id": e})
            for e in ("E1", "E2", "E3")
        ],
        source="api",
        actor=SYSTEM,
    )
    # then: every item issued, with booking ids and codes of its own
    assert [r.status for r in results] == ["completed"] * 3
    assert results[1].booking_id == "PLM-AAAA-AAAA" and results[1].voucher.code == "SAMECODE-1"
    orders = [first, *results]
    assert len({o.booking_id for o in orders}) == len({o.voucher.code for o in orders}) == 4
    stored = dict(Order.objects.values_list("pk", "booking_id"))
    assert {o.pk: o.booking_id for o in orders} == stored
    assert {o.voucher_id: o.voucher.code for o in orders} == dict(
        Voucher.objects.values_list("pk", "code")
    )
    # and the audit events and order events name the booking ids and vouchers written
    for order in results:
        event = AuditEvent.objects.get(action="order.create", object_id=str(order.pk))
        assert event.changes["booking_id"] == [None, order.booking_id]
        assert event.changes["voucher"] == [None, order.voucher_id]
        assert AuditEvent.objects.filter(
            action="voucher.issue", object_id=str(order.voucher_id)
        ).exists()
        assert {
            m.payload["data"]["booking_id"]
            for m in OutboxMessage.objects.filter(
                payload__data__order_id=order.pk, payload__type__startswith="order."
            )
        } == {order.booking_id}
    assert audit_verify()[2] == []
