"""orders.services.order_issue_batch and its plain checks, without HTTP."""

from decimal import Decimal

import pytest

from campaigns.models import Campaign, CampaignMemberCounter, Voucher
from campaigns.services.vouchers import campaign_counters_from_vouchers
from orders.errors import BatchTooLargeError, RecipientInvalidError
from orders.models import Order
from orders.services import IssuanceRequest, order_issue, order_issue_batch
from orders.services.batch import MAX_BATCH, recipient_check, value_check
from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent, Member, OutboxMessage
from tests.factories import MemberFactory

D = Decimal
pytestmark = pytest.mark.django_db


def batch(campaign, *external_ids, source="api", **kwargs):
    requests = [
        IssuanceRequest(campaign=campaign, recipient={"external_id": e}) for e in external_ids
    ]
    return order_issue_batch(requests=requests, source=source, actor=SYSTEM, **kwargs)


def codes(results):
    return [r.status if isinstance(r, Order) else r.code for r in results]


# --- plain checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "fields"),
    [
        ({}, {"recipient.external_id": ["This field is required."]}),
        ({"external_id": "  "}, {"recipient.external_id": ["This field is required."]}),
        (
            {"external_id": "E1", "email": "nope"},
            {"recipient.email": ["Enter a valid email address."]},
        ),
        (
            {"external_id": "E1", "country": "India"},
            {
                "recipient.country": [
                    "Enter an ISO 3166-1 alpha-2 country code, e.g. IN.",
                    "Ensure this value has at most 2 characters (it has 5).",
                ]
            },
        ),
    ],
)
def test_recipient_check_names_the_wrong_fields(recipient, fields):
    with pytest.raises(RecipientInvalidError) as caught:
        recipient_check(recipient)
    assert caught.value.fields == fields


def test_recipient_check_keeps_the_contact_details_and_drops_the_rest():
    assert recipient_check({"external_id": " E1 ", "name": "Asha", "campaign": 3}) == (
        "E1",
        {"name": "Asha"},
    )


def test_value_check(campaign):
    assert value_check(campaign, None) == D("500.00")
    assert value_check(campaign, D("1000.00")) == D("1000.00")
    with pytest.raises(InvalidInputError):
        value_check(campaign, D("1.00"))


# --- the service -----------------------------------------------------------------------------


def test_a_batch_issues_like_single_issuances(campaign, programme):
    # when
    results = batch(campaign, "E1", "E2")
    # then
    assert codes(results) == ["completed", "completed"]
    assert [r.member.external_id for r in results] == ["E1", "E2"]
    assert all(r.voucher.member_id == r.member_id for r in results)
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (2, D("1000.00"))
    assert campaign_counters_from_vouchers(campaign) == (2, D("1000.00"))
    # the same audit and outbox trail as the single path, per order
    single = order_issue(
        campaign=campaign, member=MemberFactory(programme=programme), source="api", actor=SYSTEM
    )
    for order in [*results, single]:
        assert (
            AuditEvent.objects.filter(
                object_type="orders.order", object_id=str(order.pk), action="order.create"
            ).count()
            == 1
        )
        assert (
            AuditEvent.objects.filter(
                object_type="campaigns.voucher",
                object_id=str(order.voucher_id),
                action="voucher.issue",
            ).count()
            == 1
        )
        # order.created, order.completed and what queueing its delivery emitted
        assert sorted(
            OutboxMessage.objects.filter(kind="event", payload__data__order_id=order.pk)
            .exclude(payload__type__startswith="delivery.")
            .values_list("payload__type", flat=True)
        ) == ["order.completed", "order.created"]
        # one delivery each; a delivery.failed event where it failed at once (no address)
        assert order.deliveries.count() == 1
        assert (
            OutboxMessage.objects.filter(
                kind="event", payload__data__order_id=order.pk, payload__type="delivery.failed"
            ).count()
            == order.deliveries.filter(status="failed").count()
        )
    batch_payload = OutboxMessage.objects.get(
        payload__data__order_id=results[0].pk, payload__type="order.completed"
    ).payload["data"]
    single_payload = OutboxMessage.objects.get(
        payload__data__order_id=single.pk, payload__type="order.completed"
    ).payload["data"]
    assert set(batch_payload) == set(single_payload)


def test_over_the_limit_raises_and_writes_nothing(campaign):
    with pytest.raises(BatchTooLargeError):
        batch(campaign, *[f"E{i}" for i in range(MAX_BATCH + 1)])
    assert Member.objects.count() == Order.objects.count() == 0


def test_an_unknown_source_is_refused(campaign):
    with pytest.raises(InvalidInputError):
        batch(campaign, "E1", source="fax")


def test_an_ended_campaign_refuses_every_item_and_takes_nothing(programme, make_campaign, snapshot):
    campaign = make_campaign(programme)
    Campaign.objects.filter(pk=campaign.pk).update(status="ended")
    before = snapshot()
    results = batch(campaign, "E1", "E2")
    assert codes(results) == ["campaign_not_active"] * 2
    after = snapshot()
    # the recipients were upserted (documented); nothing else moved
    assert {k: v for k, v in after.items() if k not in ("members", "audit")} == {
        k: v for k, v in before.items() if k not in ("members", "audit")
    }
    assert (
        AuditEvent.objects.exclude(pk__in=before["audit"])
        .filter(action__startswith="order.")
        .count()
        == 0
    )


def test_a_cap_refusal_takes_no_count(programme, make_campaign):
    # given: EMP-1 at its cap of 1, max 2
    campaign = make_campaign(programme, per_member_cap=1, max_rewards=2)
    batch(campaign, "EMP-1")
    # when: EMP-1 again (refused by the cap) must not use up the last reward
    results = batch(campaign, "EMP-1", "EMP-2")
    # then
    assert codes(results) == ["member_cap_reached", "completed"]
    campaign.refresh_from_db()
    assert campaign.issued_count == 2
    assert dict(CampaignMemberCounter.objects.values_list("member__external_id", "issued")) == {
        "EMP-1": 1,
        "EMP-2": 1,
    }


def test_several_campaigns_in_one_batch(programme, make_campaign):
    first = make_campaign(programme, max_rewards=1)
    second = make_campaign(programme, approval_mode="manual")
    requests = [
        IssuanceRequest(campaign=c, recipient={"external_id": e})
        for c, e in [(second, "E1"), (first, "E2"), (first, "E3"), (second, "E4")]
    ]
    results = order_issue_batch(requests=requests, source="upload", actor=SYSTEM)
    assert codes(results) == ["pending", "completed", "campaign_exhausted", "pending"]
    assert [r.source for r in results if isinstance(r, Order)] == ["upload"] * 3
    assert Order.objects.filter(approval_state="pending").count() == 2


def test_a_test_batch_on_a_paused_campaign_is_refused(programme, make_campaign):
    campaign = make_campaign(programme, active=False)
    assert codes(batch(campaign, "T1", is_test=True)) == ["campaign_not_active"]
    assert Voucher.objects.count() == 0


def test_variable_values_are_counted_at_their_value(programme, make_campaign):
    campaign = make_campaign(programme, budget=D("1500.00"))
    requests = [
        IssuanceRequest(campaign=campaign, recipient={"external_id": "E1"}, value=D("1000.00")),
        IssuanceRequest(campaign=campaign, recipient={"external_id": "E2"}, value=D("1000.00")),
        IssuanceRequest(campaign=campaign, recipient={"external_id": "E3"}),
    ]
    results = order_issue_batch(requests=requests, source="api", actor=SYSTEM)
    assert codes(results) == ["completed", "budget_exhausted", "budget_exhausted"]
    assert results[1].extra == {"remaining": "500.00"}
    campaign.refresh_from_db()
    assert (campaign.issued_count, campaign.issued_value) == (1, D("1000.00"))
    assert campaign_counters_from_vouchers(campaign) == (1, D("1000.00"))


def test_the_batch_audit_events_and_outbox_rows_are_whole_and_verify(campaign):
    # given / when: a batch (its audit and outbox rows are built without model instances)
    from plum.services.audit import audit_seal, audit_verify

    results = batch(campaign, "B-1", "B-2", "B-3")
    # then: every event is stored with what it said and its hash verifies, sealed or not
    assert codes(results) == ["completed"] * 3
    events = AuditEvent.objects.filter(action="order.create")
    assert events.count() == 3
    assert all(e.actor_label and e.object_type == "orders.order" for e in events)
    checked, _, problems = audit_verify()
    assert problems == [] and checked == AuditEvent.objects.count()
    audit_seal()
    assert audit_verify()[2] == []
    types = sorted(m.payload["type"] for m in OutboxMessage.objects.filter(kind="event"))
    assert types.count("order.created") == types.count("order.completed") == 3
    assert all(m.status == "pending" and m.attempts == 0 for m in OutboxMessage.objects.all())


def test_the_batch_audit_events_name_their_member_as_audit_log_does(campaign):
    # given / when
    from wallets.selectors import member_audit_log

    (order,) = batch(campaign, "B-9")
    # then: the member's audit log lists its creation, its voucher and its order
    actions = set(member_audit_log(member=order.member).values_list("action", flat=True))
    assert {"member.create", "voucher.issue", "order.create"} <= actions
    assert set(
        AuditEvent.objects.filter(action__in=["voucher.issue", "order.create"]).values_list(
            "member_id", flat=True
        )
    ) == {order.member_id}
