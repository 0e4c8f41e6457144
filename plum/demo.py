"""Demo data hooks: apps register a seeder that `manage.py seed_demo` runs after the kernel's
own demo data (plum imports no app). A seeder must be idempotent: a second run writes nothing."""

from collections.abc import Callable

from plum.models import Programme

DemoSeeder = Callable[[dict[str, Programme]], list[str]]
_seeders: list[DemoSeeder] = []


def register_demo_seeder(seeder: DemoSeeder) -> DemoSeeder:
    """`seeder(programmes_by_slug)` returns lines to print."""
    _seeders.append(seeder)
    return seeder


def demo_seeders() -> list[DemoSeeder]:
    return list(_seeders)
