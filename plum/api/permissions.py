from rest_framework import permissions

from plum.models import ApiClient


class HasApiScope(permissions.BasePermission):
    """Authenticated, and an API client holds the view's `required_scope` (default `read` for
    safe methods, `manage` otherwise). Staff users with a session pass: their programme
    permissions are checked by the selectors."""

    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view):
        principal = request.user
        if principal is None or not principal.is_authenticated:
            return False
        if isinstance(principal, ApiClient):
            scope = getattr(view, "required_scope", None)
            if scope is None:
                scope = "read" if request.method in permissions.SAFE_METHODS else "manage"
            if isinstance(scope, dict):
                scope = scope.get(request.method, "manage")
            return principal.has_scope(scope)
        return bool(principal.is_active and principal.is_staff)
