"""Plum's URL conf plus two no-op endpoints the floor benchmark measures (never deployed)."""

from django.http import JsonResponse
from django.urls import include, path
from rest_framework.response import Response

from plum.api.base import PlumApiView


def django_noop(request):
    """A plain Django view behind Plum's whole middleware stack: no DB, no DRF."""
    return JsonResponse({"ok": True})


class DrfNoop(PlumApiView):
    """Plum's API view base (API-key authentication, scope, throttle, idempotency mixin) doing
    nothing: the cost every API request pays before its own work."""

    required_scope = "issue"

    def post(self, request):
        return Response({"ok": True}, status=201)


urlpatterns = [
    path("floor/django", django_noop),
    path("floor/drf", DrfNoop.as_view()),
    path("", include("plum.urls")),
]
