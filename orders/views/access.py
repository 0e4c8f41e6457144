"""Who may use the storefront: a signed-in user linked to a member of an active programme."""

from functools import wraps
from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from plum.models import Member


def store_member(request) -> Member | None:
    """The signed-in user's member, with its programme: one query, cached on the request."""
    if not hasattr(request, "_store_member"):
        request._store_member = (
            Member.objects.select_related("programme").filter(user_id=request.user.pk).first()
        )
    return request._store_member


def member_required(view):
    """Anonymous → the storefront's sign-in page (with ?next=); a user who is not a member
    (staff, say) → a polite 403 page; otherwise the view gets `member`."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('store:login')}?{query}")
        member = store_member(request)
        if member is None or not member.programme.is_active:
            return render(request, "store/not_member.html", status=403)
        return view(request, *args, member=member, **kwargs)

    return wrapper
