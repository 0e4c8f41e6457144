"""Demo wallets for `manage.py seed_demo`: the first acme members earn, spend, get an
adjustment and a reversal, so the wallet report, statement and member audit log have
something to show. Every posting goes through the services with a fixed idempotency key, so a
second run replays instead of posting again."""

from plum.actors import SystemActor
from plum.models import Member
from wallets.errors import InsufficientPointsError
from wallets.models import Reason
from wallets.services import points_adjust, points_burn, points_earn, transaction_reverse

ACTOR = SystemActor("manage.py seed_demo")
MEMBERS = 8


def seed_wallets(programmes) -> list[str]:
    acme = programmes.get("acme")
    if acme is None:
        return []
    members = list(Member.objects.filter(programme=acme).order_by("external_id")[:MEMBERS])
    for i, member in enumerate(members):
        tag = f"demo:{member.external_id}"
        points_earn(
            member=member,
            points=500 + 100 * i,
            reason=Reason.MILESTONE_AWARD,
            reference=f"HR-AWARD-{i + 1:03d}",
            idempotency_key=f"{tag}:earn:1",
            actor=ACTOR,
        )
        points_earn(
            member=member,
            points=250,
            reason=Reason.PROGRAMME_RULE,
            reference="RULE-WELCOME",
            idempotency_key=f"{tag}:earn:2",
            actor=ACTOR,
        )
        try:
            burn, _ = points_burn(
                member=member,
                points=200 + 50 * (i % 3),
                reference=f"DEMO-BOOKING-{i + 1:04d}",
                idempotency_key=f"{tag}:burn:1",
                actor=ACTOR,
            )
        except InsufficientPointsError:
            continue
        if i % 4 == 0:
            transaction_reverse(
                transaction=burn,
                actor=ACTOR,
                note="Demo: the order was cancelled",
                idempotency_key=f"{tag}:reverse:1",
            )
        if i % 3 == 1:
            points_adjust(
                member=member,
                points=-50 if i % 2 else 75,
                note="Demo: goodwill correction",
                reference="TICKET-DEMO",
                idempotency_key=f"{tag}:adjust:1",
                actor=ACTOR,
            )
    return [
        f"Demo wallets: {len(members)} acme members with points; see /admin/wallets/"
        "ledgertransaction/reports/"
    ]
