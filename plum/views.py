import logging

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.http import require_GET

from plum.api.errors import (
    is_api_path,
    json_bad_request,
    json_not_found,
    json_permission_denied,
    json_server_error,
)

logger = logging.getLogger(__name__)


@require_GET
def home(request):
    return render(request, "plum/home.html")


@require_GET
def healthz(request):
    """Liveness and dependencies: 200 when the database answers, 503 when it does not. The
    broker is reported (ok / unreachable / not_configured) but does not fail the check: the
    outbox keeps messages safe while it is down."""
    body = {"status": "ok", "database": "ok", "broker": "not_configured"}
    code = 200
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:  # noqa: BLE001 - any failure means the database is not usable
        logger.exception("Health check: database unreachable")
        body.update(status="unavailable", database="unreachable")
        code = 503
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
            ).ping()
            body["broker"] = "ok"
        except redis.RedisError:
            body["broker"] = "unreachable"
    return JsonResponse(body, status=code)


# Django's error handlers for what happens outside a DRF view (a disallowed Host header, an
# unknown path, an exception in a plain view): under /api/ they answer in the API's error shape.


def bad_request(request, exception=None):
    if is_api_path(request.path):
        return json_bad_request(request, exception)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if is_api_path(request.path):
        return json_permission_denied(request, exception)
    return defaults.permission_denied(request, exception)


def not_found(request, exception=None):
    if is_api_path(request.path):
        return json_not_found(request, exception)
    return HttpResponse("<h1>Not found</h1>", status=404)


def server_error(request):
    if is_api_path(request.path):
        return json_server_error(request)
    return HttpResponse("<h1>Server error</h1><p>It has been logged.</p>", status=500)
