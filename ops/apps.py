from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The ops portal (/ops/): server-rendered pages for support agents. It owns no models; it
    reads through the other apps' selectors and writes through their services."""

    name = "ops"

    def ready(self):
        from ops.demo import seed_ops
        from plum.demo import register_demo_seeder

        register_demo_seeder(seed_ops)
