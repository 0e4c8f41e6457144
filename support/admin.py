"""Tickets in the admin: a read-only, programme-scoped list until the ops portal (#8) exists."""

from django.contrib import admin

from plum import roles
from plum.admin import ProgrammeScopedAdmin
from support.models import Ticket


@admin.register(Ticket)
class TicketAdmin(ProgrammeScopedAdmin):
    view_perm = roles.VIEW
    list_display = ["id", "status", "priority", "category", "member", "order", "created_at"]
    list_filter = ["status", "priority", "category", "programme"]
    list_select_related = ["member", "member__programme", "order"]
    search_fields = ["order__booking_id", "member__external_id", "member__email"]
    readonly_fields = [f.name for f in Ticket._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
