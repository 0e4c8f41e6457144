"""Ops portal pages: sign-in/out and the home page. Search, order and member pages are added
here; ticket pages live in support.views_ops (mounted under /ops/tickets/)."""

from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET

from ops.access import agent_required
from orders.views.accounts import StoreLoginView, StoreLogoutView


class OpsLoginView(StoreLoginView):
    """The storefront's sign-in with its lockout (orders.services.storefront), portal templates."""

    template_name = "ops/login.html"
    authentication_form = AuthenticationForm
    next_page = reverse_lazy("ops:home")


class OpsLogoutView(StoreLogoutView):
    next_page = reverse_lazy("ops:login")


@require_GET
@agent_required
def home(request, *, programmes):
    return render(request, "ops/home.html", {"programmes": programmes, "nav": "home"})
