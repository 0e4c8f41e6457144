"""Storefront forms: only wire-format validation; services decide everything else."""

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from campaigns.models import Reward


class StoreSignInForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match. Please try again.",
        "inactive": "This account is disabled.",
    }


class CatalogFilterForm(forms.Form):
    SORTS = [
        ("points", "Points: low to high"),
        ("-points", "Points: high to low"),
        ("name", "Name"),
    ]

    q = forms.CharField(label="Search", required=False, max_length=100)
    country = forms.ChoiceField(label="Country", required=False)
    kind = forms.ChoiceField(
        label="Kind", required=False, choices=[("", "All kinds"), *Reward.Kind.choices]
    )
    brand = forms.TypedChoiceField(label="Brand", required=False, coerce=int, empty_value=None)
    sort = forms.ChoiceField(label="Sort by", required=False, choices=SORTS)

    def __init__(self, *args, countries=(), merchants=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["country"].choices = [("", "All countries")] + [(c, c) for c in countries]
        self.fields["brand"].choices = [("", "All brands")] + [
            (str(pk), name) for pk, name in merchants
        ]


class InviteAcceptForm(forms.Form):
    username = forms.CharField(label="Choose a username", max_length=150)
    password1 = forms.CharField(
        label="Choose a password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Repeat the password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("password1") and data.get("password1") != data.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return data
