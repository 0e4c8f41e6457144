"""Storefront pages owned by support, mounted at /store/ by plum/urls.py."""

from django.urls import path

from support import views

app_name = "store_support"

urlpatterns = [
    path("orders/<str:booking_id>/report/", views.report_problem, name="report"),
    path("problems/", views.ticket_list, name="tickets"),
    path("problems/<int:ticket_id>/", views.ticket_detail, name="ticket"),
]
