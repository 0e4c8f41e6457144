"""Signing in and out, password reset by e-mail (Django's auth views with storefront
templates), and accepting an invitation. Every programme is invite-only: there is no self
sign-up; a member gets an account only through an invitation link (see docs/storefront.md)."""

from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from orders.services.storefront import (
    LOGIN_LOCKOUT_SECONDS,
    InviteInvalidError,
    LoginLimiterUnavailableError,
    login_failure_record,
    login_failures_clear,
    login_is_locked,
    member_accept_invite,
    member_from_invite,
)
from orders.views.forms import InviteAcceptForm, StoreSignInForm
from plum.errors import InvalidInputError

LOCKED_MESSAGE = (
    "Too many failed attempts to sign in to this account from here. For your security, "
    f"sign-in is paused for {LOGIN_LOCKOUT_SECONDS // 60} minutes. You can reset your password "
    "meanwhile."
)


class StoreLoginView(auth_views.LoginView):
    template_name = "store/login.html"
    authentication_form = StoreSignInForm
    redirect_authenticated_user = True
    next_page = reverse_lazy("store:dashboard")

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")[:150]
        ip = request.META.get("REMOTE_ADDR")
        try:
            if login_is_locked(username=username, ip=ip):
                return self._refused(username, LOCKED_MESSAGE, 429)
            return super().post(request, *args, **kwargs)
        except LoginLimiterUnavailableError as exc:
            # Without the failure count a password could be guessed unlimited: refuse.
            return self._refused(username, exc.message, exc.status)

    def _refused(self, username, message, status):
        # An unbound form: a refused pair's password is not even checked.
        form = self.authentication_form(self.request, initial={"username": username})
        return self.render_to_response(
            self.get_context_data(form=form, locked_message=message), status=status
        )

    def form_valid(self, form):
        login_failures_clear(username=form.get_user().get_username(), ip=self._ip())
        return super().form_valid(form)

    def form_invalid(self, form):
        username = self.request.POST.get("username", "")[:150]
        if username:
            login_failure_record(username=username, ip=self._ip())
            if login_is_locked(username=username, ip=self._ip()):
                return self.render_to_response(
                    self.get_context_data(form=form, locked_message=LOCKED_MESSAGE), status=429
                )
        return super().form_invalid(form)

    def _ip(self):
        return self.request.META.get("REMOTE_ADDR")


class AdminLoginView(StoreLoginView):
    """The admin's sign-in (/admin/login/, routed before admin.site.urls by orders.urls_admin)
    with the storefront's lockout: Django's own admin login has none, and admin accounts are
    the most valuable to guess. Same counter per (username, IP), same audit events."""

    template_name = "admin/login.html"
    authentication_form = AdminAuthenticationForm
    redirect_authenticated_user = False
    next_page = reverse_lazy("admin:index")

    def get_context_data(self, **kwargs):
        context = {
            **admin.site.each_context(self.request),
            "title": "Log in",
            "subtitle": None,
            "app_path": self.request.get_full_path(),
            **super().get_context_data(**kwargs),
        }
        context.setdefault(REDIRECT_FIELD_NAME, self.request.GET.get(REDIRECT_FIELD_NAME, ""))
        if context.get("locked_message"):
            messages.error(self.request, context["locked_message"])
        return context


class StoreLogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("store:login")


class StorePasswordResetView(auth_views.PasswordResetView):
    template_name = "store/password_reset_form.html"
    email_template_name = "store/password_reset_email.txt"
    subject_template_name = "store/password_reset_subject.txt"
    success_url = reverse_lazy("store:password_reset_done")


class StorePasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "store/password_reset_done.html"


class StorePasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "store/password_reset_confirm.html"
    success_url = reverse_lazy("store:password_reset_complete")


class StorePasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "store/password_reset_complete.html"


@sensitive_post_parameters("password1", "password2")
@csrf_protect
@never_cache
def invite_accept(request, token):
    try:
        member = member_from_invite(token=token)
    except InviteInvalidError as exc:
        return render(request, "store/invite.html", {"invalid": exc.message}, status=400)
    form = InviteAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = member_accept_invite(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except InviteInvalidError as exc:
            return render(request, "store/invite.html", {"invalid": exc.message}, status=400)
        except InvalidInputError as exc:
            for field, messages in exc.fields.items():
                for message in messages:
                    form.add_error(field if field in form.fields else None, message)
        else:
            auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("store:dashboard")
    status = 400 if request.method == "POST" else 200
    return render(request, "store/invite.html", {"form": form, "member": member}, status=status)
