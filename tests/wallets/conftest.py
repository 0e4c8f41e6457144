"""Wallet fixtures: members from the kernel's factories, points only through the services."""

import itertools

import pytest
from rest_framework.test import APIClient

from plum.actors import SYSTEM
from tests.factories import MemberFactory
from wallets.models import Account, LedgerTransaction, Posting
from wallets.services import points_earn

_keys = itertools.count(1)


def next_key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


@pytest.fixture
def member(programme):
    return MemberFactory(programme=programme, external_id="EMP-001")


@pytest.fixture
def other_member(other_programme):
    return MemberFactory(programme=other_programme, external_id="EMP-001")


@pytest.fixture
def earn():
    """earn(member, points) -> the earn transaction, posted by points_earn."""

    def make(member, points, **fields):
        txn, _ = points_earn(
            member=member,
            points=points,
            reference=fields.pop("reference", "award"),
            idempotency_key=fields.pop("idempotency_key", next_key("earn")),
            actor=fields.pop("actor", SYSTEM),
            **fields,
        )
        return txn

    return make


@pytest.fixture
def ledger_snapshot():
    """ledger_snapshot() -> every ledger row, to prove a refusal changed nothing."""

    def take():
        return {
            "accounts": list(Account.objects.order_by("pk").values()),
            "transactions": list(LedgerTransaction.objects.order_by("pk").values()),
            "postings": list(Posting.objects.order_by("pk").values()),
        }

    return take


@pytest.fixture
def make_api(make_api_client):
    """make_api(programmes, scopes=None, name=...) -> an APIClient sending that key."""

    def make(programmes, scopes=None, name="Test client", is_test=False):
        api_client, key = make_api_client(programmes, scopes=scopes, name=name, is_test=is_test)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        api.plum_client = api_client
        return api

    return make
