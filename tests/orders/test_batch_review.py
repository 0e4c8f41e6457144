"""Review of the batch-issuance speed rewrite (plum.bulk array literals, the hand-written fast
validators, the hand-encoded audit events and order events, ids drawn ahead, ON CONFLICT
redraws): what it writes is what the slow, single path writes, for odd input too.

- plum.bulk: every text an array literal must quote, numbers, NULLs, timestamps, addresses and
  JSON round-trip; `rows_insert` writes the same row whether it sends VALUES or arrays;
- the batch endpoint answers and stores what the single endpoint answers and stores, item by
  item, for odd recipients, values and references (so the fast validators agree with
  IssuanceInput and recipient_check where it matters: the stored rows);
- the audit events and order events of a batch are the single path's, and verify;
- parallel batches and single issuances on one campaign keep every limit and counter;
- known 500s outside the batch's own files are pinned as expected failures."""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import CampaignMemberCounter, Voucher
from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.models import Delivery, Order
from orders.services import IssuanceRequest, order_issue, order_issue_batch
from orders.services.delivery import DELIVERY_KIND
from orders.services.issuance import order_issue_to_recipient
from plum import context
from plum.actors import SYSTEM
from plum.bulk import VALUES_MAX_ROWS, columns_insert, row_for, rows_insert
from plum.models import AuditEvent, Member, OutboxMessage
from plum.services.audit import audit_verify, event_content_hash
from tests.campaigns.builders import fill_pool
from tests.factories import MemberFactory
from tests.orders.test_order_concurrency import run_in_parallel

D = Decimal
URL = "/api/v1/issuances/batch"
pytestmark = pytest.mark.django_db

# Texts an array literal must keep as given: its own syntax, NULL spellings, blanks, escapes,
# non-BMP, right-to-left, combining marks, invisible characters, number look-alikes, long.
ODD_TEXTS = [
    "NULL", "null", "", " ", "  lead", "trail  ", "a,b", "{x}", "}{", '"', '""', "\\", "\\\\",
    '\\"', 'say "hi"', "ü ✓ 'q'", "\t\n", "😀 non-bmp 𝔘", "שלום RTL \u202e", "e\u0301 combining",
    "\u200b zero width", "1e5", "00123", "-0", "NaN", "{1,2}", "(a)", "[b]", "'", "''",
    "\u2028\u2029", "x" * 200,
]  # fmt: skip


# --- plum.bulk ---------------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_array_insert_keeps_every_odd_text(programme):
    n = len(ODD_TEXTS)
    ids = [f"T{i}" for i in range(n)]
    columns_insert(
        Member, {"programme_id": [programme.pk] * n, "external_id": ids, "name": ODD_TEXTS}
    )
    stored = dict(Member.objects.values_list("external_id", "name"))
    assert [stored[i] for i in ids] == ODD_TEXTS


@pytest.mark.postgres
def test_the_array_insert_round_trips_numbers_nulls_timestamps_addresses_and_json():
    # given: rows mixing None into numeric, timestamp, address and JSON columns, timestamps in
    # other zones, JSON with quotes, escapes, nulls, non-BMP text, and scalars
    n = 12
    start = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    columns = {
        "occurred_at": [
            start + timedelta(days=i) if i % 3 else start.astimezone(ZoneInfo("Asia/Kolkata"))
            for i in range(n)
        ],
        "actor_type": ["system"] * n,
        "actor_user_id": [None if i % 2 else 2**62 + i for i in range(n)],
        "actor_client_id": [None] * n,
        "actor_label": ODD_TEXTS[:n],
        "action": [f"a{i}" for i in range(n)],
        "object_type": ["t"] * n,
        "object_id": [str(i) for i in range(n)],
        "programme_id": [None, 1, None, -5, 0, None, 7, 8, 9, 10, None, 12],
        "changes": [
            {"q": 'a "b" \\ c', "n": None, "u": "😀", "nested": {"x": [1, "2", None, True]}},
            {"none": None},
            {},
            [],
            "NULL",
            "",
            0,
            1.5,
            10**20,
            {"k": "\u2028"},
            {"}{": ","},
            True,
        ],  # fmt: skip
        "request_id": [""] * n,
        "ip": [
            None,
            "10.0.0.1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            None,
            "fe80::1",
            "192.0.2.1",
            "::",
            "1.1.1.1",
            "::1",
            None,
            "255.255.255.255",
        ],  # fmt: skip
        "hash": ["h"] * n,
        "member_id": [None] * n,
    }
    # when
    columns_insert(AuditEvent, {k: list(v) for k, v in columns.items()})
    # then
    rows = list(AuditEvent.objects.order_by("id").values(*columns))
    assert rows == [{k: columns[k][i] for k in columns} for i in range(n)]


@pytest.mark.postgres
@pytest.mark.parametrize("count", [1, VALUES_MAX_ROWS, VALUES_MAX_ROWS + 1, 3 * VALUES_MAX_ROWS])
def test_rows_insert_writes_a_json_none_alike_for_few_and_many_rows(count):
    # given: rows whose JSON value is None (psycopg2's Json sends it as JSON null)
    rows = [
        row_for(OutboxMessage, kind="k", payload=None, next_attempt_at=timezone.now())
        for _ in range(count)
    ]
    # when: a few go as VALUES, more as arrays
    rows_insert(OutboxMessage, rows, returning_pk=False)
    # then: the same row either way (not SQL NULL, which the NOT NULL column would refuse)
    with connection.cursor() as cursor:
        cursor.execute("SELECT jsonb_typeof(payload) FROM plum_outboxmessage")
        assert [row[0] for row in cursor.fetchall()] == ["null"] * count


# --- the batch endpoint answers and stores what the single endpoint does ----------------------

ITEM_SHAPES = [
    {"recipient": {"email": " A.B+x@Example.COM "}},
    {"recipient": {"email": "ünï@exämple.com"}},
    {"recipient": {"email": "a@b"}},
    {"recipient": {"phone": " +14155550123\n"}},
    {"recipient": {"phone": "+14155550123\n"}},
    {"recipient": {"phone": "+١٤١٥٥٥٥٠١٢٣"}},
    {"recipient": {"phone": "+1415555012²"}},
    {"recipient": {"phone": "+1 415 555 0123"}},
    {"recipient": {"phone": "+" + "1" * 20}},
    {"recipient": {"country": " IN "}},
    {"recipient": {"country": "ＩＮ"}},
    {"recipient": {"country": "in"}},
    {"recipient": {"name": "  😀 שלום e\u0301 \\ \" ' {x} NULL  "}},
    {"recipient": {"name": "\x01\x7f\u2028"}},
    {"recipient": {"name": "N\x00"}},
    {"recipient": {"name": "N" * 201}},
    {"recipient": {"preferred_channel": "SMS"}},
    {"recipient": {"preferred_channel": "sms"}},
    {"recipient": {"preferred_channel": ""}},
    {"value": "5E2"},
    {"value": "500.000"},
    {"value": "٥٠٠"},
    {"value": 500},
    {"value": 500.0},
    {"value": "-0"},
    {"value": "-500"},
    {"value": "0500.00"},
    {"value": " 500 "},
    {"value": True},
    {"value": None},
    {"value": "1E+3"},
    {"value": "Infinity"},
    {"reference": '  r\\"😀  '},
    {"reference": "\u3000ideographic space\u3000"},
    {"reference": "r" * 121},
    {"reference": None},
    {"reference": 7},
    {"campaign": "str"},
    {"campaign": "float"},
    {"recipient": {"external_id": " \u00a0EXT\u00a0 "}},
    {"recipient": {"external_id": "E\u200b"}},
    {"recipient": {"external_id": "x" * 119 + "  "}},
    {"recipient": {"external_id": "x" * 121}},
    {"recipient": {"external_id": "\t"}},
    {"recipient": {"external_id": 12345}},
    {"recipient": {"extra": "x"}},
    {"extra": 1},
]


def _item(campaign, prefix, i, shape):
    recipient = {"external_id": f"{prefix}{i}", **shape.get("recipient", {})}
    external_id = shape.get("recipient", {}).get("external_id")
    if isinstance(external_id, str):
        recipient["external_id"] = prefix + external_id
    elif external_id is not None:
        recipient["external_id"] = int(f"{1 if prefix == 'S' else 2}{external_id}")
    item = {"campaign": campaign.pk, "recipient": recipient}
    if shape.get("campaign") == "str":
        item["campaign"] = str(campaign.pk)
    elif shape.get("campaign") == "float":
        item["campaign"] = float(campaign.pk)
    item.update({k: shape[k] for k in ("value", "reference", "extra") if k in shape})
    return item


def _side(external_id) -> str:
    """Which request named the member: "S" (single, ids S... or 1...) or "B" (batch)."""
    return "S" if str(external_id)[0] in "S1" else "B"


def _without(row: dict, names) -> dict:
    return {k: v for k, v in row.items() if k not in names}


@pytest.mark.parametrize("shape", ITEM_SHAPES, ids=[json.dumps(s)[:40] for s in ITEM_SHAPES])
def test_the_batch_answers_and_stores_what_the_single_endpoint_does(
    client_api, programme, make_campaign, shape
):
    # given
    campaign = make_campaign(programme)
    # when: the same item sent alone to the single endpoint and in a batch
    single = client_api.post("/api/v1/issuances", _item(campaign, "S", 0, shape), format="json")
    batch = client_api.post(URL, {"items": [_item(campaign, "B", 0, shape)]}, format="json")
    # then: the same status, error code and fields (the parser refuses a NUL in either body)
    if batch.status_code != 200:
        assert (batch.status_code, batch.json()) == (single.status_code, single.json())
        return
    result, answer = batch.json()["results"][0], single.json()
    assert result["status"] == single.status_code, (result, answer)
    if single.status_code >= 300:
        assert result["error"]["code"] == answer["error"]["code"]
        assert result["error"].get("fields") == answer["error"].get("fields")
        assert not Order.objects.exists()
        return
    # and the same member and order rows
    names = {"id", "external_id", "created_at", "updated_at"}
    members = {_side(m["external_id"]): _without(m, names) for m in Member.objects.values()}
    assert members["S"] == members["B"]
    names |= {"booking_id", "member_id", "voucher_id", "completed_at"}
    fields = [f.attname for f in Order._meta.concrete_fields]
    orders = {
        _side(o.pop("member__external_id")): _without(o, names)
        for o in Order.objects.values("member__external_id", *fields)
    }
    assert orders["S"] == orders["B"]
    # and the same rendered order, but for what names its own rows
    own = {"booking_id", "member", "voucher", "created_at", "completed_at", "updated_at"}
    assert _without(result["order"], own) == _without(answer, own)
    assert audit_verify()[2] == []


# --- audit events and order events -----------------------------------------------------------


def _named(obj, names, key=None):
    """`obj` (JSON) with the ids and names of one issuance replaced by placeholders."""
    if isinstance(obj, dict):
        return {k: _named(v, names, k) for k, v in obj.items() if k != "occurred_at"}
    if isinstance(obj, list):
        return [_named(v, names, key) for v in obj]
    if obj is None or isinstance(obj, bool):
        return obj
    return names.get((key, obj), obj)


def _names_of(external_id: str, campaign) -> dict:
    member = Member.objects.get(external_id=external_id)
    order = Order.objects.get(member=member)
    names = {
        ("campaign", campaign.pk): "C",
        ("campaign_id", campaign.pk): "C",
        ("member", member.pk): "M",
        ("member_id", member.pk): "M",
        ("object", str(member.pk)): "M",
        ("object", str(order.pk)): "O",
        ("order_id", order.pk): "O",
        ("booking_id", order.booking_id): "B",
        ("external_id", external_id): "E",
        ("member_external_id", external_id): "E",
    }
    if order.voucher_id:
        names[("voucher", order.voucher_id)] = "V"
        names[("voucher_id", order.voucher_id)] = "V"
        names[("object", str(order.voucher_id))] = "V"
    return names


def _audit_between(low, high, names):
    events = AuditEvent.objects.filter(id__gt=low, id__lte=high).order_by("id")
    return [
        (
            e.action,
            e.object_type,
            names.get(("object", e.object_id), e.object_id),
            e.programme_id,
            names.get(("member", e.member_id)),
            _named(e.changes, names),
            e.actor_type,
            e.actor_label,
            e.actor_client_id,
        )
        for e in events
        if not e.action.startswith("delivery.")  # names its own row ids only
    ]


def _outbox_of(ids, names):
    payloads = OutboxMessage.objects.filter(id__in=ids).values_list("payload", flat=True)
    return sorted(json.dumps(_named(p, names), sort_keys=True) for p in payloads)


@pytest.mark.parametrize("approval_mode", ["auto", "manual"])
@pytest.mark.parametrize("code_source", ["generated", "pool"])
@pytest.mark.parametrize("member_exists", [False, True])
def test_the_batch_writes_the_single_path_s_audit_events_and_order_events(
    client_api, programme, make_campaign, approval_mode, code_source, member_exists
):
    # given: two like campaigns, members with odd details (or none yet)
    single_campaign, batch_campaign = (
        make_campaign(programme, approval_mode=approval_mode, code_source=code_source)
        for _ in range(2)
    )
    if code_source == "pool":
        fill_pool(single_campaign, 1)
        fill_pool(batch_campaign, 1)
    if member_exists:
        for external_id in ("S1", "B1"):
            MemberFactory(
                programme=programme, external_id=external_id, name="Old ✓", email="", phone=""
            )
    recipient = {"name": 'Zoë "q" \\ 😀', "email": "z@example.com", "phone": "+14155550123"}

    def last_event():
        return AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def outbox_ids():
        return set(OutboxMessage.objects.values_list("id", flat=True))

    start, outbox_start = last_event(), outbox_ids()
    # when
    single = client_api.post(
        "/api/v1/issuances",
        {
            "campaign": single_campaign.pk,
            "recipient": {"external_id": "S1", **recipient},
            "reference": "ref ✓ \"'",
        },
        format="json",
    )
    middle, outbox_middle = last_event(), outbox_ids()
    batch = client_api.post(
        URL,
        {
            "items": [
                {
                    "campaign": batch_campaign.pk,
                    "recipient": {"external_id": "B1", **recipient},
                    "reference": "ref ✓ \"'",
                }
            ]
        },
        format="json",
    )
    end, outbox_end = last_event(), outbox_ids()
    # then
    assert single.status_code in (201, 202), single.json()
    assert batch.json()["results"][0]["status"] == single.status_code
    single_names = _names_of("S1", single_campaign)
    batch_names = _names_of("B1", batch_campaign)
    assert _audit_between(start, middle, single_names) == _audit_between(middle, end, batch_names)
    assert _outbox_of(outbox_middle - outbox_start, single_names) == _outbox_of(
        outbox_end - outbox_middle, batch_names
    )
    out = StringIO()
    call_command("verify_audit", stdout=out)
    assert "intact" in out.getvalue()


@pytest.mark.parametrize("ip", [None, "10.0.0.7", "::ffff:10.0.0.1", "2001:DB8:0:0::1"])
def test_the_batch_s_audit_hashes_verify_for_odd_recipients_requests_and_actors(
    programme, make_campaign, make_api_client, ip
):
    # given: odd names, references and request ids, an existing member whose details change,
    # and an API client with an odd name as the actor
    campaign = make_campaign(programme)
    MemberFactory(programme=programme, external_id="OLD", name='😀 old \\ "')
    actor, _ = make_api_client([programme], name='CRM "Zoë" \\ 😀 שלום')
    requests = [
        IssuanceRequest(
            campaign=campaign,
            recipient={"external_id": f"E{i}", "name": text[:200]},
            reference=text[:120],
        )
        for i, text in enumerate(ODD_TEXTS)
    ]
    requests.append(
        IssuanceRequest(campaign=campaign, recipient={"external_id": "OLD", "name": "שלום"})
    )
    token = context.bind(context.RequestContext(request_id='req-😀-"\\', ip=ip))
    try:
        # when
        results = order_issue_batch(requests=requests, source="api", actor=actor)
    finally:
        context.reset(token)
    # then
    assert all(isinstance(r, Order) for r in results), results
    events = list(AuditEvent.objects.filter(actor_client_id=actor.pk))
    assert {e.action for e in events} >= {"member.create", "member.update", "order.create"}
    assert [e for e in events if e.hash != event_content_hash(e)] == []
    assert audit_verify()[2] == []
    # the order events name the references and recipients as given
    created = {
        m.payload["data"]["order_id"]: m.payload["data"]
        for m in OutboxMessage.objects.filter(payload__type="order.created")
    }
    for request, order in zip(requests, results, strict=True):
        assert created[order.pk]["reference"] == request.reference
        assert created[order.pk]["member_external_id"] == request.recipient["external_id"]


# --- deliveries queued by the batch -----------------------------------------------------------


@pytest.mark.parametrize("count", [5, 25])  # below and above SWEEP_KICK_ABOVE
def test_the_batch_s_deliveries_and_their_messages_are_the_general_path_s(
    client_api, campaign, count, settings
):
    settings.PLUM_DELIVERY_MAX_ATTEMPTS = 3
    items = [
        {
            "campaign": campaign.pk,
            "recipient": {"external_id": f"E{i}", **({"email": f"e{i}@x.io"} if i % 4 else {})},
        }
        for i in range(count)
    ]
    response = client_api.post(URL, {"items": items}, format="json")
    assert response.status_code == 200
    messages = {m.pk: m for m in OutboxMessage.objects.filter(kind=DELIVERY_KIND)}
    deliveries = list(Delivery.objects.select_related("order__member"))
    assert len(deliveries) == count
    for delivery in deliveries:
        order = delivery.order
        if delivery.status == "pending":
            message = messages[delivery.outbox_message_id]
            assert message.payload == {
                "order_id": order.pk,
                "booking_id": order.booking_id,
                "channel": delivery.channel,
            }
            assert (message.max_attempts, message.status, message.programme_id) == (
                3,
                "pending",
                delivery.programme_id,
            )
            assert delivery.destination == order.member.email
        else:
            assert (delivery.reason, delivery.outbox_message_id) == ("missing_contact", None)
        assert order.delivery_status == delivery.status
    assert len(messages) == sum(d.status == "pending" for d in deliveries)
    rendered = {r["order"]["booking_id"]: r["order"] for r in response.json()["results"]}
    assert {b: r["delivery_status"] for b, r in rendered.items()} == {
        d.order.booking_id: d.status for d in deliveries
    }


# --- races on Postgres ------------------------------------------------------------------------


def _tally(results) -> dict:
    counts = Counter()
    for result in results:
        if isinstance(result, list):
            counts.update("order" if isinstance(r, Order) else r.code for r in result)
        elif isinstance(result, Order):
            counts["order"] += 1
        else:
            assert hasattr(result, "code"), repr(result)  # a refusal, never another error
            counts[result.code] += 1
    return dict(counts)


def _assert_consistent(campaign, counts, *, cap=None):
    campaign.refresh_from_db()
    count, value = campaign_counters_from_vouchers(campaign)
    assert (campaign.issued_count, campaign.issued_value) == (count, value)
    orders = Order.objects.filter(campaign=campaign)
    assert counts.get("order", 0) == count == orders.count()
    assert orders.values("voucher").distinct().count() == count  # no code twice
    assert Voucher.objects.filter(campaign=campaign, member__isnull=False).count() == count
    per_member = Counter(orders.values_list("member_id", flat=True))
    if cap is not None:
        assert max(per_member.values()) <= cap
        counters = dict(
            CampaignMemberCounter.objects.filter(campaign=campaign).values_list(
                "member_id", "issued"
            )
        )
        assert {m: n for m, n in counters.items() if n} == dict(per_member)
    assert audit_verify()[2] == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("budget", "cap", "max_rewards"),
    [("12000.00", 3, None), ("40000.00", 5, 30), ("9000.00", None, None), (None, None, 17)],
)
def test_batches_and_singles_upserting_the_same_new_members_keep_every_limit(
    programme, make_campaign, budget, cap, max_rewards
):
    # given: a campaign with a few pooled codes and limits; 6 batches and 24 single issuances
    # naming the same 12 new members (created by whoever comes first), values 500 and 1,000
    campaign = make_campaign(
        programme, budget=budget and D(budget), per_member_cap=cap, max_rewards=max_rewards
    )
    fill_pool(campaign, 7)

    def batch(b):
        requests = [
            IssuanceRequest(
                campaign=campaign,
                recipient={
                    "external_id": f"M{(i * 7 + b) % 12}",
                    "name": f"n{b}-{i}",
                    "email": f"e{b}@x.io",
                },
                value=D("1000.00") if (i + b) % 3 == 0 else None,
            )
            for i in range(12)
        ]
        return lambda: order_issue_batch(requests=requests, source="api", actor=SYSTEM)

    def single(s):
        return lambda: order_issue_to_recipient(
            campaign=campaign,
            recipient={"external_id": f"M{s % 12}", "phone": "+14155550123"},
            source="api",
            actor=SYSTEM,
            value=D("1000.00") if s % 2 else None,
        )

    # when
    results = run_in_parallel([batch(b) for b in range(6)] + [single(s) for s in range(24)], 12)
    # then
    counts = _tally(results)
    _assert_consistent(campaign, counts, cap=cap)
    campaign.refresh_from_db()
    assert budget is None or campaign.issued_value <= D(budget)
    assert max_rewards is None or campaign.issued_count == max_rewards
    assert Member.objects.count() == 12


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code_source", ["generated", "pool"])
def test_batches_and_singles_to_one_member_stop_exactly_at_its_cap(
    programme, make_campaign, code_source
):
    # given: a cap of 3; batches naming M twice, singles for M, other members alongside
    campaign = make_campaign(programme, per_member_cap=3, code_source=code_source)
    if code_source == "pool":
        fill_pool(campaign, 40)
    member = MemberFactory(programme=programme, external_id="M")
    others = [MemberFactory(programme=programme, external_id=f"O{i}") for i in range(10)]

    def batch(b):
        requests = [
            IssuanceRequest(campaign=campaign, recipient={"external_id": e})
            for e in ["M", f"O{b}", "M", f"O{(b + 1) % 10}"]
        ]
        return lambda: order_issue_batch(requests=requests, source="api", actor=SYSTEM)

    def single(m):
        return lambda: order_issue(campaign=campaign, member=m, source="api", actor=SYSTEM)

    calls = [call for i in range(10) for call in (batch(i), single(member), single(others[i]))]
    # when
    results = run_in_parallel(calls, workers=16)
    # then
    counts = _tally(results)
    _assert_consistent(campaign, counts, cap=3)
    assert Order.objects.filter(member=member).count() == 3


# --- 500s found on the batch endpoint outside its own files (left to their owners) ------------


@pytest.mark.parametrize("text", ["\\ud800", "\\udfff", "a\\ud83d"])
@pytest.mark.parametrize("where", ["key", "value"])
def test_a_lone_surrogate_is_refused_as_malformed_json_not_a_500(client_api, campaign, text, where):
    field = f'"{text}": 1' if where == "key" else f'"reference": "{text}"'
    body = '{"items": [{"campaign": %d, "recipient": {"external_id": "E"}, %s}]}'
    before = Order.objects.count()
    response = client_api.generic(
        "POST", URL, body % (campaign.pk, field), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed_json"
    assert "lone surrogates" in response.json()["error"]["message"]
    assert Order.objects.count() == before


def test_a_surrogate_pair_is_text_and_accepted(client_api, campaign):
    pair = '"reference": "\\ud83d\\ude00"'  # one emoji, as JSON escapes it
    item = '{"campaign": ' + str(campaign.pk) + ', "recipient": {"external_id": "E"}, ' + pair
    body = '{"items": [' + item + "}]}"
    response = client_api.generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert Order.objects.get().reference == "\U0001f600"


def test_a_client_with_a_200_character_name_can_issue(programme, make_api_client, campaign):
    _, key = make_api_client([programme], name="N" * 200)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    item = {"campaign": campaign.pk, "recipient": {"external_id": "E"}}
    assert api.post(URL, {"items": [item]}, format="json").status_code == 200


def test_redrawn_booking_ids_are_named_by_held_pooled_and_generated_orders_alike(
    programme, make_campaign, monkeypatch
):
    # given: held, pooled and generated items; an order holding a booking id that every item's
    # first draw offers (with the stored row and with each other), and refused items alongside
    from orders.services import batch as batch_service

    generated = make_campaign(programme, max_rewards=3)
    held = make_campaign(programme, approval_mode="manual")
    pooled = make_campaign(programme, code_source="pool")
    fill_pool(pooled, 1)
    (first,) = order_issue_batch(
        requests=[IssuanceRequest(campaign=generated, recipient={"external_id": "E0"})],
        source="api",
        actor=SYSTEM,
    )
    real = batch_service.booking_ids_new
    draws = iter([lambda n: [first.booking_id] * n])
    monkeypatch.setattr(batch_service, "booking_ids_new", lambda n: next(draws, real)(n))
    campaigns = [generated, held, pooled, generated, pooled, generated, generated]
    # when
    results = order_issue_batch(
        requests=[
            IssuanceRequest(campaign=c, recipient={"external_id": f"E{i + 1}"})
            for i, c in enumerate(campaigns)
        ],
        source="api",
        actor=SYSTEM,
    )
    # then: the accepted got booking ids of their own, named by their audit events and events
    outcomes = [r.status if isinstance(r, Order) else r.code for r in results]
    assert outcomes == [
        "completed", "pending", "completed", "completed",
        "pool_exhausted", "campaign_exhausted", "campaign_exhausted",
    ]  # fmt: skip
    orders = [first, *(r for r in results if isinstance(r, Order))]
    assert len({o.booking_id for o in orders}) == len(orders)
    assert dict(Order.objects.values_list("pk", "booking_id")) == {
        o.pk: o.booking_id for o in orders
    }
    for order in orders[1:]:
        event = AuditEvent.objects.get(action="order.create", object_id=str(order.pk))
        assert event.changes["booking_id"] == [None, order.booking_id]
        assert event.changes["voucher"] == [None, order.voucher_id]
        assert {
            m.payload["data"]["booking_id"]
            for m in OutboxMessage.objects.filter(
                payload__data__order_id=order.pk, payload__type__startswith="order."
            )
        } == {order.booking_id}
    # the refused left no order, voucher, counter, audit or outbox row of their own
    refused = ["E5", "E6", "E7"]
    assert not Order.objects.filter(member__external_id__in=refused).exists()
    assert not Voucher.objects.filter(member__external_id__in=refused).exists()
    assert (
        not AuditEvent.objects.filter(
            member_id__in=Member.objects.filter(external_id__in=refused).values("pk")
        )
        .exclude(action="member.create")
        .exists()
    )
    for campaign in (generated, pooled):
        campaign.refresh_from_db()
        assert (campaign.issued_count, campaign.issued_value) == campaign_counters_from_vouchers(
            campaign
        )
    assert audit_verify()[2] == []
