"""The ops portal, mounted at /ops/ by plum/urls.py. Its own writes are reveal, resend and the
contact correction; ticket work (assign, status, reply, note, new) is support's, under
/ops/tickets/ (support/urls_ops.py)."""

from django.urls import include, path

from ops import views

app_name = "ops"

urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in/", views.OpsLoginView.as_view(), name="login"),
    path("sign-out/", views.OpsLogoutView.as_view(), name="logout"),
    path("orders/<str:booking_id>/", views.order_detail, name="order"),
    path("orders/<str:booking_id>/reveal/", views.order_reveal, name="reveal"),
    path("orders/<str:booking_id>/resend/", views.order_resend, name="resend"),
    path("members/<int:member_id>/", views.member_detail, name="member"),
    path("members/<int:member_id>/contact/", views.member_contact, name="member_contact"),
    path("tickets/", include("support.urls_ops")),
]
