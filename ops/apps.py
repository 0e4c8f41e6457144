from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The ops portal (/ops/): server-rendered pages for support agents. It owns no models; it
    reads through the other apps' selectors and writes through their services."""

    name = "ops"
