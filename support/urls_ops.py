"""Ticket pages of the ops portal, mounted at /ops/tickets/ by ops/urls.py (URL names are
`ops:tickets_*`, in the ops namespace)."""

from django.urls import path

from support import views_ops

urlpatterns: list = [
    path("", views_ops.queue, name="tickets_queue"),
    path("new/", views_ops.new, name="tickets_new"),
    path("<int:ticket_id>/", views_ops.detail, name="tickets_detail"),
    path("<int:ticket_id>/assign/", views_ops.assign, name="tickets_assign"),
    path("<int:ticket_id>/status/", views_ops.status, name="tickets_status"),
    path("<int:ticket_id>/reply/", views_ops.reply, name="tickets_reply"),
    path("<int:ticket_id>/note/", views_ops.note, name="tickets_note"),
]
