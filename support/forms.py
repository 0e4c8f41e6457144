from django import forms

from support.models import Ticket


class TicketForm(forms.Form):
    category = forms.ChoiceField(label="What went wrong?", choices=Ticket.Category.choices)
    description = forms.CharField(
        label="Tell us what happened",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 5}),
    )
