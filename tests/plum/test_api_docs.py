"""The public, unauthenticated pages: the OpenAPI schema, its docs page and the health check."""

import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

SWAGGER = "/static/drf_spectacular_sidecar/swagger-ui-dist"
ASSETS = [
    f"{SWAGGER}/favicon-32x32.png",
    f"{SWAGGER}/swagger-ui.css",
    f"{SWAGGER}/swagger-ui-bundle.js",
    f"{SWAGGER}/swagger-ui-standalone-preset.js",
    # Swagger UI's start-up script, served by the docs view itself rather than inline (the
    # Content-Security-Policy allows no inline script).
    "/api/docs/?script=",
]


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture
def docs_html(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    return response.content.decode()


# --- schema ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schema_is_valid_openapi_3(client):
    # when
    response = client.get("/api/schema/?format=json")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Plum API"
    validate_schema(document)


@pytest.mark.django_db
def test_the_schema_documents_each_path_once_without_its_trailing_slash_twin(schema):
    # when
    paths = list(schema["paths"])
    # then
    assert [p for p in paths if p.rstrip("/") == "/api/v1/members"] == ["/api/v1/members"]
    assert [p for p in paths if p.endswith("/")] == []


@pytest.mark.django_db
def test_the_schema_documents_the_bearer_api_key(schema):
    # when
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    # then
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert {"apiKey": []} in schema["paths"]["/api/v1/members"]["get"]["security"]
    assert {"apiKey": []} in schema["paths"]["/api/v1/members"]["post"]["security"]


# --- docs page ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_docs_page_loads_its_assets_from_this_site_only(docs_html):
    # when
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", docs_html)
    # then
    assert sorted(references) == sorted(ASSETS)
    assert re.findall(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", docs_html, re.IGNORECASE) == []


@pytest.mark.django_db
def test_the_docs_page_reads_the_schema_from_this_site(client, docs_html):
    # when
    script = client.get("/api/docs/?script=")
    # then
    assert script.status_code == 200
    assert script["Content-Type"] == "application/javascript"
    code = script.content.decode()
    assert re.findall(r'url: "([^"]*)"', code) == ["/api/schema/"]
    assert re.findall(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}/", code, re.IGNORECASE) == []
    assert "<script>" not in docs_html  # nothing inline


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        (ASSETS[0], "image/png"),
        (ASSETS[1], 'text/css; charset="utf-8"'),
        (ASSETS[2], 'text/javascript; charset="utf-8"'),
        (ASSETS[3], 'text/javascript; charset="utf-8"'),
    ],
)
def test_the_docs_assets_are_served(client, path, content_type):
    # given
    source = Path(finders.find(path.removeprefix("/static/"))).read_bytes()
    # when
    response = client.get(path)
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert b"".join(response.streaming_content) == source
    response.close()


# --- health check ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("redis_url", "broker"),
    [("", "not_configured"), ("redis://127.0.0.1:1/0", "unreachable")],
)
def test_the_health_check_reports_the_database_and_the_broker(client, settings, redis_url, broker):
    # given: the broker's state is reported but does not fail the check
    settings.REDIS_URL = redis_url
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok", "database": "ok", "broker": broker}


@pytest.mark.redis
@pytest.mark.django_db
def test_the_health_check_reaches_the_real_broker(client):
    # when
    response = client.get("/healthz")
    # then
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}
