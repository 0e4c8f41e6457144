from rest_framework import permissions

from plum.models import ApiClient


class HasApiScope(permissions.BasePermission):
    """Authenticated, and an API client holds the view's `required_scope` (default `read` for
    safe methods, `manage` otherwise). Staff users with a session pass: their programme
    permissions are checked by the selectors."""

    message = "You do not have permission to perform this action."

    def has_permission(self, request, view):
        principal = request.user
        if principal is None or not principal.is_authenticated:
            return False
        if isinstance(principal, ApiClient):
            scope = required_scope(view, request.method)
            accepted = scope if isinstance(scope, tuple) else (scope,)
            if not any(principal.has_scope(s) for s in accepted):
                # DRF makes a permission instance per request: this message is this refusal's.
                self.message = (
                    f"This API key lacks the scope this endpoint needs: {' or '.join(accepted)}."
                )
                return False
            return True
        return bool(principal.is_active and principal.is_staff)


def required_scope(view, method: str) -> str | tuple[str, ...]:
    """The view's `required_scope`: one scope, a tuple of scopes any of which opens it, or a
    {method: scope-or-tuple} map. HEAD needs what GET
    needs; another method the map does not name needs `read` when safe and `manage` otherwise."""
    scope = getattr(view, "required_scope", None)
    if isinstance(scope, dict):
        scope = scope.get(method) or (scope.get("GET") if method == "HEAD" else None)
    if scope is None:
        scope = "read" if method in permissions.SAFE_METHODS else "manage"
    return scope
