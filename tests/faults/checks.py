"""Invariant checks every fault-injection test ends with.

`assert_system_consistent()` runs the operators' own proofs (`check_ledger`, `verify_audit`)
and recomputes every campaign counter from the rows it counts, so a fault that half-applied a
change (a counter bumped without its voucher, a voucher without its order, a burn without its
order) fails the test with the first mismatch named.
"""

from collections import Counter

from django.core.management import call_command
from django.db.models import Count

from campaigns.models import Campaign, CampaignMemberCounter, Voucher
from campaigns.services.vouchers import COUNTED_STATUSES, campaign_counters_from_vouchers
from orders.models import Order


def counter_problems() -> list[str]:
    """Campaign counters, per-member counters and order/voucher pairing versus the rows."""
    problems: list[str] = []
    for campaign in Campaign.objects.order_by("pk"):
        expected = campaign_counters_from_vouchers(campaign)
        actual = (campaign.issued_count, campaign.issued_value)
        if actual != expected:
            problems.append(
                f"campaign {campaign.pk}: counters (issued_count, issued_value) = {actual}, "
                f"vouchers say {expected}"
            )
        if campaign.budget is not None and campaign.issued_value > campaign.budget:
            problems.append(f"campaign {campaign.pk}: issued {campaign.issued_value} > budget")
    counted = (
        Voucher.objects.filter(is_test=False, member__isnull=False, status__in=COUNTED_STATUSES)
        .values("campaign_id", "member_id")
        .annotate(n=Count("id"))
        .values_list("campaign_id", "member_id", "n")
    )
    per_member = {(c, m): n for c, m, n in counted}
    for row in CampaignMemberCounter.objects.order_by("pk"):
        expected_n = per_member.get((row.campaign_id, row.member_id), 0)
        if row.issued != expected_n:
            problems.append(
                f"member counter campaign {row.campaign_id} member {row.member_id}: "
                f"{row.issued}, vouchers say {expected_n}"
            )
    completed = Order.objects.filter(status=Order.Status.COMPLETED)
    if missing := completed.filter(voucher__isnull=True).count():
        problems.append(f"{missing} completed order(s) without a voucher")
    holders = Counter(completed.exclude(voucher=None).values_list("voucher_id", flat=True))
    if doubles := [v for v, n in holders.items() if n > 1]:
        problems.append(f"voucher(s) held by two completed orders: {doubles[:10]}")
    if burns := completed.filter(points__isnull=False, points_transaction__isnull=True).count():
        problems.append(f"{burns} points order(s) without their burn")
    return problems


def assert_system_consistent() -> None:
    """check_ledger, verify_audit and counters-versus-rows; raise naming the first problem."""
    call_command("check_ledger")
    call_command("verify_audit")
    problems = counter_problems()
    assert problems == [], problems
