"""The ops portal, mounted at /ops/ by plum/urls.py."""

from django.urls import include, path

from ops import views

app_name = "ops"

urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in/", views.OpsLoginView.as_view(), name="login"),
    path("sign-out/", views.OpsLogoutView.as_view(), name="logout"),
    path("tickets/", include("support.urls_ops")),
]
