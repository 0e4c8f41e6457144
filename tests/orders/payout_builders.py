"""Set-up for payout tests: merchants and campaigns through the catalog and campaign services,
orders only through the order services, at the real clock. Periods are then chosen around the
real time: `weekly_period()` is the ISO week (UTC) the orders completed in, and a close is run
with a `now` after that week's end."""

import itertools
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from campaigns.models import Merchant
from orders.services import order_issue, payout_period_containing
from plum.actors import SYSTEM
from tests.campaigns.builders import make_campaign, make_reward
from tests.factories import MemberFactory

CENT = Decimal("0.01")
_names = itertools.count(1)


def make_merchant(*, commission="2.50", period="weekly", name=None):
    return Merchant.objects.create(
        name=name or f"Merchant {next(_names)}",
        commission_percent=Decimal(commission),
        payout_period=period,
    )


def merchant_campaign(programme, merchant, *, currency=None, denominations=("500.00",), **fields):
    currency = currency or programme.currency
    reward = make_reward(
        merchant=merchant.name, currency=currency, denominations=denominations, name="Gift card"
    )
    value = Decimal(denominations[0])
    return make_campaign(
        programme,
        reward=reward,
        currency=currency,
        value=value,
        name=f"{merchant} {currency}",
        **fields,
    )


def sell(campaign, value=None, *, is_test=False):
    member = MemberFactory(programme=campaign.programme)
    return order_issue(
        campaign=campaign,
        member=member,
        value=Decimal(value) if value is not None else None,
        source="api",
        actor=SYSTEM,
        is_test=is_test,
    )


def weekly_period(at=None):
    return payout_period_containing("weekly", at or timezone.now())


def after(end):
    """A `now` at which the period ending at `end` is over."""
    return end + timedelta(hours=1)


def commission_of(value, percent) -> Decimal:
    """The documented rule, in Python: per line, half up to the cent."""
    return (Decimal(value) * Decimal(percent) / 100).quantize(CENT, rounding=ROUND_HALF_UP)
