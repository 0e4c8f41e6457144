"""Races on Postgres with real parallel connections (one per thread)."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from campaigns.errors import (
    CampaignExhaustedError,
    VoucherInsufficientBalanceError,
    VoucherNotRedeemableError,
)
from campaigns.models import Redemption, Voucher
from campaigns.services.vouchers import (
    campaign_counters_from_vouchers,
    voucher_redeem,
    vouchers_recover,
)
from plum.actors import SYSTEM
from plum.errors import PlumError
from tests.campaigns.builders import issue, make_campaign, make_reward
from tests.factories import MemberFactory

D = Decimal
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run_in_parallel(functions):
    """Start every function at once (a barrier), each on its own connection; return what each
    returned or raised, in order."""
    barrier = threading.Barrier(len(functions))
    results = [None] * len(functions)

    def runner(index, function):
        try:
            barrier.wait(timeout=30)
            results[index] = function()
        except Exception as exc:  # the outcome under test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, f)) for i, f in enumerate(functions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_fifty_parallel_partial_redemptions_never_overdraw(programme):
    # given: 200.00 of balance, 50 tills each taking 10.00
    campaign = make_campaign(
        programme, value=D("200.00"), reward=make_reward(denominations=["200.00"])
    )
    voucher = issue(campaign, MemberFactory(programme=programme))
    # when
    results = run_in_parallel(
        [
            lambda i=i: voucher_redeem(
                voucher=voucher, amount=D("10.00"), reference=f"till-{i}", actor=SYSTEM
            )
            for i in range(50)
        ]
    )
    # then
    voucher.refresh_from_db()
    won = [r for r in results if isinstance(r, tuple)]
    # refused while balance remained, or once the voucher was fully redeemed
    refused = [
        r
        for r in results
        if isinstance(r, VoucherInsufficientBalanceError | VoucherNotRedeemableError)
    ]
    total = sum(r.amount for r in Redemption.objects.filter(voucher=voucher))
    assert (len(won), len(refused)) == (20, 30)
    assert (voucher.balance, voucher.status) == (D("0.00"), "redeemed")
    assert total == voucher.face_value - voucher.balance == D("200.00")


def test_parallel_redemptions_with_one_reference_redeem_once(programme):
    voucher = issue(make_campaign(programme), MemberFactory(programme=programme))
    results = run_in_parallel(
        [
            lambda: voucher_redeem(voucher=voucher, amount=D("25"), reference="same", actor=SYSTEM)
            for _ in range(10)
        ]
    )
    voucher.refresh_from_db()
    assert all(isinstance(r, tuple) for r in results), results
    assert sorted(created for _, created in results) == [False] * 9 + [True]
    assert len({redemption.pk for redemption, _ in results}) == 1
    assert voucher.balance == D("475.00")


@pytest.mark.parametrize("round_", range(5))
def test_recover_racing_a_redemption_has_exactly_one_winner(programme, round_):
    # given
    campaign = make_campaign(programme, max_rewards=10)
    voucher = issue(campaign, MemberFactory(programme=programme))
    # when
    recovered, redeemed = run_in_parallel(
        [
            lambda: vouchers_recover(vouchers=Voucher.objects.filter(pk=voucher.pk), actor=SYSTEM),
            lambda: voucher_redeem(voucher=voucher, amount=D("5"), reference="pos", actor=SYSTEM),
        ]
    )
    # then
    voucher.refresh_from_db()
    campaign.refresh_from_db()
    recover_won = recovered["recovered"] == 1
    redeem_won = isinstance(redeemed, tuple)
    assert recover_won != redeem_won, (recovered, redeemed)
    assert isinstance(redeemed, tuple | VoucherNotRedeemableError)
    assert voucher.status in ({"available"} if recover_won else {"partially_redeemed"})
    assert (campaign.issued_count, campaign.issued_value) == campaign_counters_from_vouchers(
        campaign
    )


def test_parallel_issues_never_pass_max_rewards(programme):
    # given
    campaign = make_campaign(programme, max_rewards=10)
    members = [MemberFactory(programme=programme) for _ in range(40)]
    # when
    results = run_in_parallel([lambda m=m: issue(campaign, m) for m in members])
    # then
    campaign.refresh_from_db()
    issued = [r for r in results if isinstance(r, Voucher)]
    exhausted = [r for r in results if isinstance(r, CampaignExhaustedError)]
    assert not [r for r in results if isinstance(r, PlumError | Exception) and r not in exhausted]
    assert (len(issued), len(exhausted)) == (10, 30)
    assert (campaign.issued_count, campaign.issued_value) == (10, D("5000.00"))
    assert campaign_counters_from_vouchers(campaign) == (10, D("5000.00"))


def test_parallel_issues_from_one_pool_never_hand_out_a_code_twice(programme):
    # given
    from tests.campaigns.builders import fill_pool

    campaign = make_campaign(programme, code_source="pool")
    fill_pool(campaign, 30)
    members = [MemberFactory(programme=programme) for _ in range(20)]
    # when
    results = run_in_parallel([lambda m=m: issue(campaign, m) for m in members])
    # then
    codes = [r.code for r in results if isinstance(r, Voucher)]
    assert len(codes) == len(set(codes)) == 20
    assert Voucher.objects.filter(campaign=campaign, status="available").count() == 10
