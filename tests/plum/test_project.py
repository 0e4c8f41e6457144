"""The project as a whole: demo data, migrations, health check, docker-compose."""

import json
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.apps import apps
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def _row_counts():
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.app_label in {"plum", "auth", "guardian", "campaigns"}
        and not model._meta.proxy
    }


@pytest.mark.django_db
def test_seed_demo_twice_is_a_no_op():
    # given
    call_command("seed_demo", stdout=StringIO())
    after_first = _row_counts()
    # when
    out = StringIO()
    call_command("seed_demo", stdout=out)
    # then
    assert _row_counts() == after_first
    assert after_first["plum.Programme"] == 2
    assert after_first["plum.Member"] == 30
    assert after_first["plum.ApiClient"] == 1
    assert after_first["campaigns.Campaign"] == 3  # one with codes, two in the storefront
    assert after_first["campaigns.Voucher"] == 100
    assert after_first["campaigns.Redemption"] == 1
    assert "plum_live_demo_acme_key_for_local_use_only" in out.getvalue()
    for username in ("admin", "manager", "agent", "finance", "member"):
        assert username in out.getvalue()


@pytest.mark.django_db
def test_seed_demo_users_hold_their_roles():
    # given
    from django.contrib.auth import get_user_model

    from plum.selectors import programmes_for

    call_command("seed_demo", stdout=StringIO())
    users = {u.username: u for u in get_user_model().objects.all()}
    # when
    visible = {
        name: sorted(programmes_for(users[name]).values_list("slug", flat=True))
        for name in ("admin", "manager", "agent", "finance", "member")
    }
    # then
    assert visible == {
        "admin": ["acme", "globex"],
        "manager": ["acme"],
        "agent": ["acme"],
        "finance": ["acme"],
        "member": [],
    }
    assert users["member"].member.external_id == "ACME-0001"


@pytest.mark.django_db
def test_migrations_are_complete():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


@pytest.mark.django_db
def test_healthz_reports_database_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_healthz_is_503_when_the_database_is_down():
    # given: a process whose database is a closed port
    from tests.stubs import free_port

    script = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz');"
        "print(r.status_code); print(r.content.decode())"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"postgres://plum:plum@127.0.0.1:{free_port()}/plum",
        "SECRET_KEY": "x",
        "DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "plum.settings",
        "PYTHONDONTWRITEBYTECODE": "",
    }
    # when
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # then
    status, body = done.stdout.split("\n", 1)
    assert status == "503"
    assert json.loads(body) == {
        "status": "unavailable",
        "database": "unreachable",
        "broker": "not_configured",
    }


COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_defines_every_service_with_a_health_check():
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "redis", "web", "worker", "beat"}
    assert all("healthcheck" in spec for spec in services.values())


@pytest.mark.parametrize("name", ["web", "worker", "beat"])
def test_compose_app_services_reach_postgres_and_redis(name):
    spec = COMPOSE["services"][name]
    env = spec["environment"]
    assert env["DATABASE_URL"].startswith("postgres://plum:plum@postgres:5432/")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert set(spec["depends_on"]) <= set(COMPOSE["services"])
    assert (ROOT / "Dockerfile").exists()


def test_compose_commands_name_real_entry_points():
    services = COMPOSE["services"]
    assert "plum.wsgi:application" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "plum", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "plum", "beat"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_is_valid():
    subprocess.run(["docker-compose", "config", "-q"], cwd=ROOT, check=True, timeout=60)
