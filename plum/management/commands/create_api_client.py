from django.core.management.base import BaseCommand, CommandError

from plum.actors import SystemActor
from plum.errors import PlumError
from plum.models import ApiScope, Programme
from plum.services.api_clients import api_client_create


class Command(BaseCommand):
    help = "Create an API client bound to a programme and print its key once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--programme", required=True, action="append", help="slug; repeatable")
        parser.add_argument("--name", required=True)
        parser.add_argument("--test", action="store_true", help="a test-mode key")
        parser.add_argument(
            "--scopes",
            default=",".join(ApiScope.values),
            help=f"comma-separated, from {','.join(ApiScope.values)} (default: all)",
        )

    def handle(self, *args, **options):
        slugs = options["programme"]
        programmes = list(Programme.objects.filter(slug__in=slugs))
        missing = sorted(set(slugs) - {p.slug for p in programmes})
        if missing:
            raise CommandError(f"No programme with slug: {', '.join(missing)}")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        if not scopes:
            raise CommandError("Give at least one scope: a key without scopes can do nothing.")
        try:
            client, key = api_client_create(
                name=options["name"],
                programmes=programmes,
                scopes=scopes,
                is_test=options["test"],
                actor=SystemActor("manage.py create_api_client"),
            )
        except PlumError as exc:
            raise CommandError(f"{exc.message} {exc.fields or ''}".strip()) from exc
        mode = "test" if client.is_test else "live"
        self.stdout.write(
            f"Created {mode} API client {client.name!r} (id {client.pk}) for "
            f"{', '.join(p.slug for p in programmes)} with scopes {','.join(client.scopes)}."
        )
        self.stdout.write("The key is shown only once:")
        self.stdout.write(key)
