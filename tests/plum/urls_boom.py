"""The real URL conf plus views under /api/v1/ that fail, for the error-handler tests."""

from django.core.exceptions import PermissionDenied
from django.urls import path

from plum.api.base import PlumApiView
from plum.urls import handler400, handler403, handler404, handler500
from plum.urls import urlpatterns as plum_urlpatterns

SECRET = "db-password=hunter2"


class BoomApi(PlumApiView):
    def get(self, request):
        raise RuntimeError(f"unexpected failure ({SECRET})")


def boom_plain(request):
    raise RuntimeError(f"unexpected failure ({SECRET})")


def forbidden_plain(request):
    raise PermissionDenied(SECRET)


urlpatterns = [
    path("api/v1/boom", BoomApi.as_view()),
    path("api/v1/boom-plain", boom_plain),
    path("api/v1/forbidden-plain", forbidden_plain),
    path("boom", boom_plain),
    *plum_urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
