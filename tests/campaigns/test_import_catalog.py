"""`manage.py import_catalog FILE.csv`: rewards created or updated by SKU, idempotently; a file
with any bad row names every problem and writes nothing."""

from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from campaigns.models import Merchant, Reward
from plum.models import AuditEvent

D = Decimal
pytestmark = pytest.mark.django_db

HEADER = (
    "sku,merchant,name,kind,country,currency,denominations,min_value,max_value,points_price,active"
)
GOOD = f"""{HEADER}
LOTUS-GC-IN,Lotus Jewellers,Lotus gift card,gift_card,in,inr,500|1000,,,10,1
BREW-GC-IN,Brew & Co,Brew coffee card,gift_card,IN,INR,,100,2000,,yes
SKYDIVE-IN,Skyline Adventures,Tandem skydive,experience,IN,INR,25000,,,12,0
"""
SAMPLE = Path(settings.BASE_DIR) / "docs" / "samples" / "catalog.csv"


def write(tmp_path, text: str, name: str = "catalog.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def run(path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_catalog", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def catalog() -> list[tuple]:
    return list(
        Reward.objects.order_by("sku").values_list(
            "sku",
            "merchant__name",
            "name",
            "kind",
            "country",
            "currency",
            "denominations",
            "min_value",
            "max_value",
            "points_price",
            "is_active",
        )
    )


EXPECTED = [
    (
        "BREW-GC-IN",
        "Brew & Co",
        "Brew coffee card",
        "gift_card",
        "IN",
        "INR",
        [],
        D("100.00"),
        D("2000.00"),
        None,
        True,
    ),
    (
        "LOTUS-GC-IN",
        "Lotus Jewellers",
        "Lotus gift card",
        "gift_card",
        "IN",
        "INR",
        ["500", "1000"],
        None,
        None,
        10,
        True,
    ),
    (
        "SKYDIVE-IN",
        "Skyline Adventures",
        "Tandem skydive",
        "experience",
        "IN",
        "INR",
        ["25000"],
        None,
        None,
        12,
        False,
    ),
]


def test_a_good_file_creates_rewards_and_their_merchants(tmp_path):
    # given
    path = write(tmp_path, GOOD)
    # when
    out, err = run(path)
    # then
    assert out == f"Imported 3 reward(s) from {path}: 3 created, 0 updated.\n"
    assert err == ""
    assert catalog() == EXPECTED
    assert sorted(Merchant.objects.values_list("name", flat=True)) == [
        "Brew & Co",
        "Lotus Jewellers",
        "Skyline Adventures",
    ]
    event = AuditEvent.objects.get(action="catalog.import")
    assert (event.actor_label, event.changes) == (
        "manage.py import_catalog",
        {"rows": [None, 3]},
    )


def test_running_the_same_file_again_changes_nothing(tmp_path):
    # given
    path = write(tmp_path, GOOD)
    run(path)
    ids = dict(Reward.objects.values_list("sku", "pk"))
    # when
    out, _ = run(path)
    # then
    assert out == f"Imported 3 reward(s) from {path}: 0 created, 3 updated.\n"
    assert catalog() == EXPECTED
    assert dict(Reward.objects.values_list("sku", "pk")) == ids
    assert Merchant.objects.count() == 3


def test_a_second_file_updates_rewards_by_sku(tmp_path):
    # given
    run(write(tmp_path, GOOD))
    lotus = Reward.objects.get(sku="LOTUS-GC-IN")
    update = (
        f"{HEADER}\n"
        "LOTUS-GC-IN,Lotus Jewellers,Lotus gift card (new),gift_card,IN,INR,500|2000,,,8,0\n"
        "NEW-SKU,Brew & Co,Brew mug,merchandise,IN,INR,799,,,,1\n"
    )
    # when
    out, _ = run(write(tmp_path, update, "update.csv"))
    # then
    assert out == f"Imported 2 reward(s) from {tmp_path / 'update.csv'}: 1 created, 1 updated.\n"
    lotus_after = Reward.objects.get(sku="LOTUS-GC-IN")
    assert (
        lotus_after.pk,
        lotus_after.name,
        lotus_after.denominations,
        lotus_after.points_price,
        lotus_after.is_active,
    ) == (lotus.pk, "Lotus gift card (new)", ["500", "2000"], 8, False)
    assert Reward.objects.count() == 4


def test_the_shipped_sample_catalog_imports_cleanly():
    # when
    out, err = run(SAMPLE)
    # then
    assert out == f"Imported 8 reward(s) from {SAMPLE}: 8 created, 0 updated.\n"
    assert err == ""
    assert set(Reward.objects.values_list("kind", flat=True)) == set(Reward.Kind.values)


BAD = f"""{HEADER}
GOOD-1,Lotus Jewellers,Fine row,gift_card,IN,INR,500,,,,1
BAD-KIND,Lotus Jewellers,Bad kind,voucher,IN,INR,500,,,,1
BAD-COUNTRY,Lotus Jewellers,Bad country,gift_card,1N,INR,500,,,,1
GOOD-1,Lotus Jewellers,Duplicate,gift_card,IN,INR,500,,,,1
BAD-MIN,Lotus Jewellers,Bad minimum,gift_card,IN,INR,,ten,100,,1
BAD-DENOMINATION,Lotus Jewellers,Bad denomination,gift_card,IN,INR,5x0,,,,1
BAD-POINTS,Lotus Jewellers,Bad points,gift_card,IN,INR,500,,,lots,1
"""


def test_a_bad_file_names_every_bad_row_and_writes_nothing(tmp_path):
    # given
    path = write(tmp_path, BAD)
    err = StringIO()
    # when
    with pytest.raises(CommandError) as raised:
        call_command("import_catalog", str(path), stdout=StringIO(), stderr=err)
    # then
    assert err.getvalue().splitlines() == [
        "row 3, kind: Value 'voucher' is not a valid choice.",
        "row 4, country: Enter an ISO 3166-1 alpha-2 country code, e.g. IN.",
        "row 5, sku: Duplicate SKU in file.",
        "row 6, min_value: Not a number: 'ten'.",
        "row 7, denominations: Not a number: '5x0'.",
        "row 8, points_price: Whole points.",
    ]
    assert str(raised.value) == f"{path}: 6 problem(s) in 6 row(s). Nothing was imported."
    assert raised.value.returncode == 1
    assert (Reward.objects.count(), Merchant.objects.count()) == (0, 0)
    assert AuditEvent.objects.filter(action="catalog.import").count() == 0


def test_a_bad_file_leaves_an_existing_catalog_as_it_was(tmp_path):
    # given
    run(write(tmp_path, GOOD))
    before = catalog()
    bad = (
        f"{HEADER}\n"
        "LOTUS-GC-IN,Lotus Jewellers,Renamed,gift_card,IN,INR,500,,,,1\n"
        "X,M,N,pen,IN,INR,1,,,,1\n"
    )
    # when
    with pytest.raises(CommandError):
        run(write(tmp_path, bad, "bad.csv"))
    # then
    assert catalog() == before
    assert Merchant.objects.count() == 3


def test_an_unknown_column_is_refused_before_any_row(tmp_path):
    # given
    path = write(
        tmp_path, "sku,merchant,name,kind,country,currency,colour\nX,M,N,gift_card,IN,INR,red\n"
    )
    err = StringIO()
    # when
    with pytest.raises(CommandError) as raised:
        call_command("import_catalog", str(path), stdout=StringIO(), stderr=err)
    # then
    assert err.getvalue() == "header: missing: -; unknown: colour\n"
    assert str(raised.value) == (
        f"{path}: The header does not match the catalog columns. Nothing was imported."
    )
    assert Reward.objects.count() == 0


def test_a_missing_file_is_a_command_error(tmp_path):
    # when
    with pytest.raises(CommandError) as raised:
        run(tmp_path / "nope.csv")
    # then
    assert str(raised.value) == f"No such file: {tmp_path / 'nope.csv'}"
