"""Ops portal pages: sign-in/out, search (the home page), the order page with its timeline,
reveal and resend, the member page with its contact correction. Ticket pages live in
support.views_ops (mounted under /ops/tickets/).

Every object is looked up through ops.selectors with the agent's programmes: another
programme's order or member is the same 404 as a missing one. Writes go through the owning
apps' services (voucher_reveal, delivery_resend, member_upsert), each audited with the agent
as actor. No page offers, and no URL accepts, a change of values, points or campaign settings."""

from django.contrib import messages
from django.contrib.auth.forms import AuthenticationForm
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.services.vouchers import voucher_reveal
from ops.access import agent_required
from ops.forms import ContactForm, ResendForm, SearchForm
from ops.selectors import (
    ops_member_get,
    ops_member_orders,
    ops_member_tickets,
    ops_order_get,
    ops_order_story,
    ops_search,
)
from orders.errors import (
    DeliveryContactMissingError,
    DeliveryInProgressError,
    OrderNotDeliverableError,
    RecipientInvalidError,
)
from orders.services.delivery import delivery_channel_for
from orders.services.delivery import delivery_resend as _delivery_resend
from orders.views.accounts import StoreLoginView, StoreLogoutView
from plum.errors import InvalidInputError
from plum.models import Channel
from plum.services.programmes import member_upsert
from wallets.selectors import member_audit_log, wallet_get, wallet_posting_list

PAGE_SIZE = 20


class OpsLoginView(StoreLoginView):
    """The storefront's sign-in with its lockout (orders.services.storefront), portal templates."""

    template_name = "ops/login.html"
    authentication_form = AuthenticationForm
    next_page = reverse_lazy("ops:home")


class OpsLogoutView(StoreLogoutView):
    next_page = reverse_lazy("ops:login")


# --- search ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
@agent_required
def home(request, *, programmes):
    """The search page. The search is a POST so that a voucher code, an e-mail or a phone
    never travels in a URL (access logs, browser history, Referer headers)."""
    form = SearchForm(request.POST or None)
    result = None
    if request.method == "POST" and form.is_valid():
        result = ops_search(
            programmes=programmes, query=form.cleaned_data["q"], principal=request.user
        )
    return render(
        request,
        "ops/home.html",
        {"programmes": programmes, "nav": "home", "form": form, "result": result},
    )


# --- the order ---------------------------------------------------------------------------------


def _order_or_404(programmes, booking_id):
    order = ops_order_get(programmes=programmes, booking_id=booking_id)
    if order is None:
        raise Http404("No such order.")
    return order


def _resend_initial(order, story) -> dict:
    last = story.deliveries[-1] if story.deliveries else None
    member = order.member
    return {
        "channel": last.channel if last else delivery_channel_for(order=order),
        "name": member.name,
        "email": member.email,
        "phone": member.phone,
    }


def _order_page(request, order, *, status=200, resend_form=None, revealed_code="", error=""):
    story = ops_order_story(order=order)
    wallet = wallet_get(member=order.member)
    return render(
        request,
        "ops/order.html",
        {
            "order": order,
            "member": order.member,
            "voucher": order.voucher,
            "wallet": wallet,
            "story": story,
            "resend_form": resend_form or ResendForm(initial=_resend_initial(order, story)),
            "resend_error": error,
            "revealed_code": revealed_code,
            "can_resend": order.status == order.Status.COMPLETED and order.voucher_id is not None,
        },
        status=status,
    )


@require_GET
@never_cache
@agent_required
def order_detail(request, booking_id, *, programmes):
    order = _order_or_404(programmes, booking_id)
    if order.booking_id != booking_id:
        return redirect("ops:order", booking_id=order.booking_id)
    return _order_page(request, order)


@require_POST
@never_cache
@agent_required
def order_reveal(request, booking_id, *, programmes):
    """Confirm the code on record: the full code, shown in this response only, and audited
    (voucher.reveal with the agent as actor). A GET of the order page never shows it."""
    order = _order_or_404(programmes, booking_id)
    if order.voucher is None:
        messages.error(request, "This order has no voucher yet: there is no code to reveal.")
        return redirect("ops:order", booking_id=order.booking_id)
    code = voucher_reveal(voucher=order.voucher, actor=request.user)
    return _order_page(request, order, revealed_code=code)


CHANNEL_WORDS = {Channel.EMAIL: "e-mail address", Channel.SMS: "phone", Channel.WHATSAPP: "phone"}


def _resend_refusal(exc, order, channel) -> str:
    if isinstance(exc, OrderNotDeliverableError):
        return (
            f"This order cannot be sent: it is {order.get_status_display().lower()}. "
            "Only a completed order with its voucher can be resent."
        )
    if isinstance(exc, DeliveryInProgressError):
        return (
            "A delivery of this order is still in progress. Wait for its result (a few "
            "minutes at most) before resending."
        )
    if isinstance(exc, DeliveryContactMissingError):
        return (
            f"The member has no {CHANNEL_WORDS.get(channel, 'address')} for "
            f"{Channel(channel).label}. Enter one, or choose another channel."
        )
    if isinstance(exc, RecipientInvalidError):
        return "The corrected details are not valid; nothing was changed. See the fields below."
    return f"The resend was refused ({exc.code}); nothing was changed."


@require_POST
@never_cache
@agent_required
def order_resend(request, booking_id, *, programmes):
    """Resend the voucher on a chosen channel, to the member's current or corrected details
    (delivery_resend: the member is corrected through member_upsert and a new delivery goes
    through the outbox, both audited with the agent). Refusals change nothing and are shown in
    words; success redirects (post/redirect/get) with a message."""
    order = _order_or_404(programmes, booking_id)
    form = ResendForm(request.POST)
    if not form.is_valid():
        return _order_page(request, order, status=400, resend_form=form)
    channel = form.cleaned_data["channel"]
    contact = form.changes_from(order.member)
    try:
        delivery = _delivery_resend(
            order=order, channel=channel, contact=contact or None, actor=request.user
        )
    except (
        OrderNotDeliverableError,
        DeliveryInProgressError,
        DeliveryContactMissingError,
        RecipientInvalidError,
    ) as exc:
        for field, errors in (exc.fields or {}).items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _order_page(
            request,
            order,
            status=exc.status,
            resend_form=form,
            error=_resend_refusal(exc, order, channel),
        )
    messages.success(
        request,
        f"Resent by {Channel(delivery.channel).label} to {delivery.destination}. "
        "The timeline shows the outcome once the message has gone out.",
    )
    return redirect("ops:order", booking_id=order.booking_id)


# --- the member --------------------------------------------------------------------------------


def _member_or_404(programmes, member_id):
    member = ops_member_get(programmes=programmes, member_id=member_id)
    if member is None:
        raise Http404("No such member.")
    return member


def _page(request, rows, name):
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get(name))


def _member_page(request, member, *, status=200, contact_form=None, error=""):
    wallet = wallet_get(member=member)
    return render(
        request,
        "ops/member.html",
        {
            "member": member,
            "wallet": wallet,
            "orders": _page(request, ops_member_orders(member=member), "orders"),
            "postings": _page(
                request, wallet_posting_list(wallet=wallet).order_by("-id"), "ledger"
            ),
            "events": _page(request, member_audit_log(member=member), "audit"),
            "tickets": list(ops_member_tickets(member=member)[:PAGE_SIZE]),
            "contact_form": contact_form
            or ContactForm(
                initial={"name": member.name, "email": member.email, "phone": member.phone}
            ),
            "contact_error": error,
        },
        status=status,
    )


@require_GET
@never_cache
@agent_required
def member_detail(request, member_id, *, programmes):
    return _member_page(request, _member_or_404(programmes, member_id))


@require_POST
@never_cache
@agent_required
def member_contact(request, member_id, *, programmes):
    """Correct the member's name, e-mail or phone (member_upsert, audited as member.update
    with the agent). Only those three fields are read from the form; anything else posted is
    ignored. Blank fields keep the current value."""
    member = _member_or_404(programmes, member_id)
    form = ContactForm(request.POST)
    if not form.is_valid():
        return _member_page(request, member, status=400, contact_form=form)
    changes = form.changes_from(member)
    if not changes:
        messages.info(request, "Nothing to change: the details are the same.")
        return redirect("ops:member", member_id=member.pk)
    try:
        member_upsert(
            programme=member.programme,
            external_id=member.external_id,
            actor=request.user,
            data=changes,
        )
    except InvalidInputError as exc:
        for field, errors in exc.fields.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _member_page(
            request,
            member,
            status=422,
            contact_form=form,
            error="The details are not valid; nothing was changed. See the fields below.",
        )
    messages.success(request, f"Contact details updated ({', '.join(sorted(changes))}).")
    return redirect("ops:member", member_id=member.pk)
