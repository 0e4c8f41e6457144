"""Ticket pages of the ops portal, mounted at /ops/tickets/ by ops/urls.py (URL names are
`ops:tickets_*`, in the ops namespace)."""

urlpatterns: list = []
