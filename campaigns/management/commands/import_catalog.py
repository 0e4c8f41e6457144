from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from campaigns.models import Reward
from campaigns.services.campaigns import CATALOG_COLUMNS, catalog_import
from plum.actors import SystemActor
from plum.errors import PlumError

ACTOR = SystemActor("manage.py import_catalog")


class Command(BaseCommand):
    help = (
        "Create or update rewards by SKU from a CSV file (columns: docs/catalog.md). Every row "
        "is checked first: if any row is wrong, each problem is printed and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help=f"CSV with a header row of {', '.join(CATALOG_COLUMNS)}")

    def handle(self, *args, **options):
        path = Path(options["file"])
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError as exc:
            raise CommandError(f"No such file: {path}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text.") from exc
        # Counted around the import to tell new SKUs from updated ones (the service reports
        # rows written); a concurrent import would blur the split, not the total.
        before = Reward.objects.count()
        try:
            result = catalog_import(text=text, actor=ACTOR)
        except PlumError as exc:
            for column, problems in exc.fields.items():
                for problem in problems:
                    self.stderr.write(f"{column}: {problem}")
            raise CommandError(f"{path}: {exc.message} Nothing was imported.") from exc
        errors = result["errors"]
        if errors:
            for error in errors:
                self.stderr.write(f"row {error['row']}, {error['column']}: {error['message']}")
            raise CommandError(
                f"{path}: {len(errors)} problem(s) in "
                f"{len({e['row'] for e in errors})} row(s). Nothing was imported."
            )
        total = result["created_or_updated"]
        created = Reward.objects.count() - before
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {total} reward(s) from {path}: {created} created, "
                f"{total - created} updated."
            )
        )
