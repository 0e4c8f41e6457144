from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from plum import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    # Before admin.site.urls: /admin/login/ is the admin's login with the sign-in lockout.
    path("admin/", include("orders.urls_admin")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("plum.api.urls")),
    path("api/v1/", include("campaigns.api_urls")),
    path("api/v1/", include("wallets.api_urls")),
    path("api/v1/", include("orders.api.urls")),
    path("api/v1/", include("support.api_urls")),
    path("store/", include("orders.urls_store")),
    path("store/", include("support.urls_store")),
    path("ops/", include("ops.urls")),
]

handler400 = "plum.views.bad_request"
handler403 = "plum.views.permission_denied"
handler404 = "plum.views.not_found"
handler500 = "plum.views.server_error"
