"""The system benchmark's loader (bench/bench_system.py) at a tiny scale, on the test database:
the data set it builds is consistent (counts, counters, programme scoping, balances) and its
ledger passes check_ledger, both through the bulk path and with the balance trigger on."""

import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F

from campaigns.models import Campaign, Voucher
from orders.models import Order, StoreListing
from plum.models import Member, Programme
from wallets.models import Account, LedgerTransaction, Posting
from wallets.selectors import ledger_problems

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_system  # noqa: E402 - bench/ is not a package

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

SCALE = 0.0002  # 10 programmes, 10 campaigns, 20 members, 200 vouchers, 200 postings


def test_sizes_scale_every_count_but_the_programmes():
    # given / when
    full, tiny = bench_system.sizes(1), bench_system.sizes(SCALE)

    # then
    assert full == {
        "programmes": 10,
        "campaigns": 1000,
        "members": 100_000,
        "vouchers": 1_000_000,
        "transactions": 500_000,
        "upload_rows": 100_000,
    }
    assert tiny == {
        "programmes": 10,
        "campaigns": 10,
        "members": 20,
        "vouchers": 200,
        "transactions": 100,
        "upload_rows": 100,
    }


@pytest.mark.parametrize("ledger_triggers", [False, True], ids=["bulk-path", "trigger-on"])
def test_the_loader_builds_a_consistent_data_set(ledger_triggers):
    # given
    size = bench_system.sizes(SCALE)

    # when
    loaded = bench_system.load(SCALE, ledger_triggers=ledger_triggers)
    with connection.cursor() as cursor:
        # Whatever the balance trigger deferred runs now (the test never commits).
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # then: the counts asked for
    assert Programme.objects.filter(slug__startswith="sys-").count() == 10
    assert Campaign.objects.filter(status="active", in_storefront=True).count() == 10
    assert StoreListing.objects.filter(listed=True).count() == 10
    assert Member.objects.count() == size["members"]
    assert Voucher.objects.filter(status="active", balance=500).count() == size["vouchers"]
    assert Order.objects.filter(status="completed", voucher__isnull=False).count() == 200
    assert LedgerTransaction.objects.count() == size["transactions"]
    assert Posting.objects.count() == 2 * size["transactions"]
    assert [len(loaded.programme_ids), len(loaded.campaign_ids)] == [10, 10]
    # counters equal their rows, and nothing crosses a programme
    assert bench_system.counters_mismatched() == 0
    assert not Voucher.objects.exclude(member__programme_id=F("programme_id")).exists()
    assert not Voucher.objects.exclude(campaign__programme_id=F("programme_id")).exists()
    # the ledger checks, and every wallet holds 3 earns and 1 burn of 5 steps, then an earn
    assert ledger_problems() == []
    assert set(Account.objects.filter(kind="member_wallet").values_list("balance", flat=True)) == {
        4 * bench_system.EARN - bench_system.BURN
    }
    # the names a load generator computes resolve
    voucher = Voucher.objects.get(code="SYSV000000011")
    assert voucher.campaign_id == loaded.campaign_ids[0]
    assert voucher.member.external_id == "SYS-0000011"
    # the balance trigger is on again
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname IN "
            "('wallets_posting_balanced', 'wallets_transaction_balanced') ORDER BY tgname"
        )
        assert cursor.fetchall() == [
            ("wallets_posting_balanced", "O"),
            ("wallets_transaction_balanced", "O"),
        ]
