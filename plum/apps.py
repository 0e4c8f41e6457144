from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs):
    from plum.roles import sync_roles

    sync_roles()


class PlumConfig(AppConfig):
    name = "plum"
    verbose_name = "Plum kernel"

    def ready(self):
        from plum import handlers, senders  # noqa: F401 - register the kernel's senders and jobs

        # After every migrate, so permissions of apps migrated later reach the role groups.
        post_migrate.connect(_sync_roles, dispatch_uid="plum.sync_roles")
