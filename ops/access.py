"""Who may use the ops portal, and on which programmes.

An agent is a signed-in user holding `plum.support_programme` or `plum.manage_programme` on at
least one programme (Support agents, Programme managers, Platform admins). Every portal read is
scoped with `agent_programmes(user)`; anything outside it is a 404, never a 403, so that an
agent of programme A cannot even learn that an object of programme B exists."""

from functools import wraps
from urllib.parse import urlencode

from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from plum import roles
from plum.selectors import programmes_for


def agent_programmes(user) -> QuerySet:
    """Programmes the user may work on in the portal (support or manage permission), cached on
    the user object for the request."""
    if not hasattr(user, "_ops_programmes"):
        user._ops_programmes = (
            programmes_for(user, roles.SUPPORT) | programmes_for(user, roles.MANAGE)
        ).distinct()
    return user._ops_programmes


def agent_required(view):
    """Anonymous → the portal's sign-in page (with ?next=); a signed-in user who is an agent of
    no programme → a 403 page; otherwise the view runs with `programmes` (a queryset of the
    programmes in scope) as a keyword argument."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('ops:login')}?{query}")
        programmes = agent_programmes(request.user)
        if not request.user.is_active or not programmes.exists():
            return render(request, "ops/forbidden.html", status=403)
        return view(request, *args, programmes=programmes, **kwargs)

    return wrapper
