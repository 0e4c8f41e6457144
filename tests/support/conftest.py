"""Support fixtures: the ops portal's two programmes with their members, orders and users
(tests/ops/conftest.py), SLA policies for programme A, and a frozen clock."""

from datetime import UTC, datetime, timedelta

import pytest

from plum.actors import SYSTEM
from support.services import sla_policy_set, ticket_open
from tests.ops.conftest import (  # noqa: F401 - fixtures
    agent_a,
    agent_b,
    as_user,
    fresh_cache,
    http_providers,
    manager_a,
    member_user,
    provider,
    side_a,
    side_b,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0) -> datetime:
    """The frozen clock: T0 plus some time."""
    return T0 + timedelta(hours=hours, minutes=minutes)


@pytest.fixture
def policies(programme):
    """Programme A promises: high — answer in 2 h, resolve in 8 h; normal — 8 h / 48 h."""
    return {
        "high": sla_policy_set(
            programme=programme,
            priority="high",
            first_response_hours=2,
            resolution_hours=8,
            actor=SYSTEM,
        ),
        "normal": sla_policy_set(
            programme=programme,
            priority="normal",
            first_response_hours=8,
            resolution_hours=48,
            actor=SYSTEM,
        ),
    }


def open_ticket(side, *, category="code_not_working", now=None, actor=SYSTEM, **kwargs):
    return ticket_open(
        member=side.member,
        order=side.order,
        category=category,
        description="The shop says the code is invalid.",
        actor=actor,
        now=now or T0,
        **kwargs,
    )


@pytest.fixture
def ticket_a(side_a, policies):  # noqa: F811 - the fixture
    """A high-priority ticket of programme A opened at T0 (first response due T0+2 h)."""
    return open_ticket(side_a)


@pytest.fixture
def ticket_b(side_b):  # noqa: F811 - the fixture
    """A ticket of programme B (no SLA policy there)."""
    return open_ticket(side_b)
