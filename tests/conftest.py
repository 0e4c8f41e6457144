"""Shared fixtures. Tests that need Postgres or Redis are marked `postgres` / `redis`; without
the service they are skipped with a reason that says so, and with PLUM_REQUIRE_SERVICES=1 (CI)
such a skip is a failure instead."""

import os

import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from tests import factories

REQUIRE_SERVICES = os.environ.get("PLUM_REQUIRE_SERVICES") == "1"


def _on_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def _missing_service(item) -> str | None:
    if item.get_closest_marker("postgres") and not _on_postgres():
        return "needs PostgreSQL: set DATABASE_URL=postgres://... to run it"
    if item.get_closest_marker("redis") and not settings.REDIS_URL:
        return "needs Redis: set REDIS_URL=redis://... to run it"
    return None


def pytest_runtest_setup(item):
    reason = _missing_service(item)
    if reason is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"PLUM_REQUIRE_SERVICES=1 but this test {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    # Test teardown flushes tables with TRUNCATE; let it through the append-only triggers for
    # the test database's own connections only.
    if _on_postgres():
        options = settings.DATABASES["default"].setdefault("OPTIONS", {})
        options["options"] = "-c plum.allow_truncate=on"


@pytest.fixture
def db_name():
    return connection.settings_dict["NAME"]


@pytest.fixture
def programme(db):
    return factories.ProgrammeFactory(slug="alpha", name="Alpha")


@pytest.fixture
def other_programme(db):
    return factories.ProgrammeFactory(slug="beta", name="Beta")


@pytest.fixture
def make_api_client(db):
    """make_api_client(programmes=[...], scopes=[...], is_test=False) -> (client, key)."""
    from plum.actors import SYSTEM
    from plum.services.api_clients import api_client_create

    def make(programmes, scopes=None, is_test=False, name="Test client"):
        return api_client_create(
            name=name, programmes=programmes, scopes=scopes, is_test=is_test, actor=SYSTEM
        )

    return make


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def client_api(programme, make_api_client):
    """An APIClient authenticated as a live API client of `programme` with every scope."""
    api_client, key = make_api_client([programme])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    api.plum_client = api_client
    return api


@pytest.fixture
def make_user(db):
    """make_user(role, programme=None) -> a user holding `role` (on `programme`)."""
    from plum.actors import SYSTEM
    from plum.services.programmes import role_grant

    def make(role, programme=None, username=None):
        user = factories.UserFactory(
            username=username or f"{role.split()[0].lower()}-{factories.next_id()}"
        )
        role_grant(user=user, role=role, programme=programme, actor=SYSTEM)
        return user

    return make


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on a free local port; Django's mail goes to it."""
    from tests.stubs import SmtpServer

    with SmtpServer() as server:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = server.port
        settings.EMAIL_USE_TLS = False
        yield server


@pytest.fixture
def services_env(db_name, settings):
    """Environment for a subprocess (manage.py, a Celery worker) that must use the test
    database and this run's Redis."""
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db_name}"
        ),
        "SECRET_KEY": "test-subprocess-secret-key",
        "DEBUG": "0",
        "STATIC_MANIFEST": "0",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


@pytest.fixture(autouse=True)
def _strict_events(settings):
    """Every emitted event type must be in plum.event_catalog, with its required fields."""
    settings.PLUM_STRICT_EVENTS = True
