"""Portal forms: wire-format checks only. The services validate the values themselves (a bad
e-mail or phone comes back from `member_upsert` as field errors), so there is one source of
truth for what a valid contact detail is."""

from django import forms

from ops.selectors import phone_normalize
from plum.models import Channel


class SearchForm(forms.Form):
    q = forms.CharField(
        label="Booking ID, voucher code, member ID, e-mail or phone",
        max_length=254,
        strip=True,
    )


class _ContactFields(forms.Form):
    name = forms.CharField(label="Name", max_length=200, required=False, strip=True)
    email = forms.CharField(label="E-mail address", max_length=254, required=False, strip=True)
    phone = forms.CharField(
        label="Phone (E.164, e.g. +919812345678)", max_length=32, required=False, strip=True
    )

    def clean_phone(self) -> str:
        raw = self.cleaned_data["phone"]
        return (phone_normalize(raw) or raw) if raw else ""

    def changes_from(self, member) -> dict:
        """The non-blank fields that differ from the member's current details: only those are
        sent to the service, so the audit log records what was really corrected."""
        return {
            name: value
            for name in ("name", "email", "phone")
            if (value := self.cleaned_data.get(name)) and value != getattr(member, name)
        }


class ResendForm(_ContactFields):
    channel = forms.ChoiceField(label="Channel", choices=Channel.choices, widget=forms.RadioSelect)


class ContactForm(_ContactFields):
    pass
