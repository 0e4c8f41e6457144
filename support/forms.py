from django import forms

from support.models import Ticket


class TicketForm(forms.Form):
    category = forms.ChoiceField(label="What went wrong?", choices=Ticket.Category.choices)
    description = forms.CharField(
        label="Tell us what happened",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )


class MessageForm(forms.Form):
    body = forms.CharField(
        label="Message", max_length=8000, strip=True, widget=forms.Textarea(attrs={"rows": 4})
    )


class AgentTicketForm(TicketForm):
    """An agent opens a ticket for a member (optionally about one of their orders)."""

    priority = forms.ChoiceField(
        label="Priority",
        choices=[("", "From the category"), *Ticket.Priority.choices],
        required=False,
    )
    description = forms.CharField(
        label="What the member reported",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
