"""The admin's sign-in with the sign-in lockout, mounted at /admin/ by plum/urls.py before
admin.site.urls, so /admin/login/ resolves here."""

from django.urls import path

from orders.views import accounts

app_name = "admin_login"

urlpatterns = [
    path("login/", accounts.AdminLoginView.as_view(), name="login"),
]
