"""Production settings: `manage.py check --deploy` is clean with the environment the Docker image
sets (Dockerfile ENV) plus what the README's Production section asks for; and gunicorn, started
with that environment, answers with the security headers and only secure, HttpOnly cookies,
redirects plain http to https, and shows no debug page."""

import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.factories import UserFactory
from tests.stubs import free_port

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def production_env(base: dict, **extra) -> dict[str, str]:
    env = {
        **{k: v for k, v in base.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))},
        **dockerfile_env(),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "plum.example.com,127.0.0.1",
        "STATIC_MANIFEST": "0",
        **extra,
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def test_the_image_switches_on_https_only_and_hsts():
    env = dockerfile_env()
    assert env["SECURE_SSL_REDIRECT"] == "1"
    assert int(env["SECURE_HSTS_SECONDS"]) >= 31536000


@pytest.mark.postgres
@pytest.mark.django_db
def test_check_deploy_is_clean_with_the_production_environment(services_env):
    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(services_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.fixture
def gunicorn(services_env):
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "plum.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        env=production_env(services_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{base}/healthz", timeout=5)
                break
            except requests.RequestException:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=15)


HTTPS = {"X-Forwarded-Proto": "https"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_plain_http_is_redirected_to_https_except_the_health_probe(gunicorn):
    # when
    page = requests.get(f"{gunicorn}/store/sign-in/", allow_redirects=False, timeout=10)
    health = requests.get(f"{gunicorn}/healthz", allow_redirects=False, timeout=10)
    # then
    assert page.status_code == 301
    assert page.headers["Location"].startswith("https://")
    assert health.status_code == 200


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["/store/sign-in/", "/ops/sign-in/", "/api/v1/vouchers"])
def test_every_response_carries_the_security_headers(gunicorn, path):
    # when
    response = requests.get(f"{gunicorn}{path}", headers=HTTPS, allow_redirects=False, timeout=10)
    # then
    headers = response.headers
    assert headers["Strict-Transport-Security"] == ("max-age=31536000; includeSubDomains; preload")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


def _cookie_flags(response, name: str) -> set[str]:
    raw = [c for c in response.raw.headers.getlist("Set-Cookie") if c.startswith(f"{name}=")]
    assert raw, f"no {name} cookie set"
    return {part.strip().split("=")[0].lower() for part in raw[0].split(";")[1:]}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_session_and_csrf_cookies_are_secure_and_http_only(gunicorn):
    # given: a staff user who signs in to the admin over https (behind the proxy)
    user = UserFactory(username="admin1", is_staff=True, is_superuser=True)
    user.set_password("correct-horse-battery")
    user.save()
    session = requests.Session()
    form = session.get(f"{gunicorn}/admin/login/", headers=HTTPS, timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    # when
    signed_in = session.post(
        f"{gunicorn}/admin/login/",
        data={
            "csrfmiddlewaretoken": token,
            "username": "admin1",
            "password": "correct-horse-battery",
        },
        headers={
            **HTTPS,
            "Referer": "https://127.0.0.1/admin/login/",
            "Host": "127.0.0.1",
            "Cookie": f"csrftoken={form.cookies['csrftoken']}",
        },
        allow_redirects=False,
        timeout=10,
    )
    # then
    assert signed_in.status_code == 302, signed_in.text[:500]
    assert {"secure", "httponly", "samesite"} <= _cookie_flags(signed_in, "sessionid")
    assert {"secure", "samesite"} <= _cookie_flags(form, "csrftoken")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_errors_show_no_debug_page(gunicorn):
    # when
    missing = requests.get(f"{gunicorn}/no-such-page", headers=HTTPS, timeout=10)
    api = requests.get(f"{gunicorn}/api/v1/no-such-endpoint", headers=HTTPS, timeout=10)
    # then
    assert missing.status_code == 404
    assert "Traceback" not in missing.text
    assert "DEBUG = True" not in missing.text
    assert "URLconf" not in missing.text
    assert api.status_code == 404
