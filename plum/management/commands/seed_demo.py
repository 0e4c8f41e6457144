"""Demo data for `make run`. Idempotent: what exists is left alone, so a second run writes
nothing (not even audit events)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from plum import roles
from plum.actors import SystemActor
from plum.demo import demo_seeders
from plum.models import ApiClient, Member, Programme
from plum.services.api_clients import api_client_create, hash_key
from plum.services.programmes import (
    member_link_user,
    member_upsert,
    programme_create,
    role_grant,
    user_create,
)

ACTOR = SystemActor("manage.py seed_demo")
DEMO_PASSWORD = "plum-demo-2026"
DEMO_API_KEY = "plum_live_demo_acme_key_for_local_use_only"

PROGRAMMES = [
    {
        "slug": "acme",
        "name": "Acme Rewards",
        "currency": "INR",
        "timezone": "Asia/Kolkata",
        "default_channel": "email",
    },
    {
        "slug": "globex",
        "name": "Globex Perks",
        "currency": "USD",
        "timezone": "America/New_York",
        "default_channel": "sms",
    },
]
USERS = [
    ("admin", roles.PLATFORM_ADMIN, None),
    ("manager", roles.PROGRAMME_MANAGER, "acme"),
    ("agent", roles.SUPPORT_AGENT, "acme"),
    ("finance", roles.FINANCE, "acme"),
    ("member", roles.MEMBER, "acme"),
]
FIRST_NAMES = ["Asha", "Ravi", "Meera", "Arjun", "Priya", "Dev", "Kiran", "Nisha", "Rahul", "Tara"]


class Command(BaseCommand):
    help = "Load demo programmes, members, users of every role and an API client (idempotent)."

    def handle(self, *args, **options):
        with transaction.atomic():
            programmes = self._programmes()
            self._members(programmes)
            self._users(programmes)
            self._api_client(programmes["acme"])
        # After the kernel's data commits: app seeders run services that own their transactions.
        extra = [line for seeder in demo_seeders() for line in seeder(programmes)]
        self.stdout.write(self.style.SUCCESS("Demo data ready."))
        for line in extra:
            self.stdout.write(line)
        self.stdout.write(f"Demo logins (password {DEMO_PASSWORD!r} for each):")
        for username, role, slug in USERS:
            where = f" on {slug}" if slug else ""
            self.stdout.write(f"  {username:<8} {role}{where}")
        self.stdout.write(f"Demo API key (live, acme): {DEMO_API_KEY}")

    def _programmes(self) -> dict[str, Programme]:
        result = {}
        for spec in PROGRAMMES:
            programme = Programme.objects.filter(slug=spec["slug"]).first()
            result[spec["slug"]] = programme or programme_create(actor=ACTOR, **spec)
        return result

    def _members(self, programmes):
        for slug, count, prefix, country in (
            ("acme", 20, "+9198765", "IN"),
            ("globex", 10, "+1415555", "US"),
        ):
            for i in range(1, count + 1):
                name = f"{FIRST_NAMES[i % len(FIRST_NAMES)]} {slug.title()} {i}"
                member_upsert(
                    programme=programmes[slug],
                    external_id=f"{slug.upper()}-{i:04d}",
                    actor=ACTOR,
                    data={
                        "name": name,
                        "email": f"{slug}.member{i}@example.com",
                        "phone": f"{prefix}{i:04d}",
                        "country": country,
                        "preferred_channel": "email",
                    },
                )

    def _users(self, programmes):
        User = get_user_model()  # noqa: N806
        for username, role, slug in USERS:
            if User.objects.filter(username=username).exists():
                continue
            user = user_create(
                username=username,
                email=f"{username}@plum.localhost",
                password=DEMO_PASSWORD,
                is_superuser=role == roles.PLATFORM_ADMIN,
                actor=ACTOR,
            )
            role_grant(
                user=user, role=role, programme=programmes[slug] if slug else None, actor=ACTOR
            )
            if role == roles.MEMBER:
                member = Member.objects.get(programme=programmes[slug], external_id="ACME-0001")
                member_link_user(member=member, user=user, actor=ACTOR)

    def _api_client(self, programme):
        if ApiClient.objects.filter(key_hash=hash_key(DEMO_API_KEY)).exists():
            return
        api_client_create(name="Demo POS", programmes=[programme], actor=ACTOR, key=DEMO_API_KEY)
