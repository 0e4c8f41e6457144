"""The model validators and the database's CHECKs agree: Python's `$` also matches before a
trailing newline, Postgres's does not, so the validators end in \\Z. Otherwise a value could pass
validation and then fail its CHECK inside a transaction (a 500 instead of a field error)."""

import pytest
from django.core.exceptions import ValidationError

from plum.models import country_validator, currency_validator, e164_validator, slug_validator


@pytest.mark.parametrize(
    ("validator", "good"),
    [
        (e164_validator, "+14155550123"),
        (country_validator, "IN"),
        (currency_validator, "INR"),
        (slug_validator, "acme-rewards"),
    ],
)
def test_a_trailing_newline_is_refused_by_every_validator(validator, good):
    # given: the good value passes
    validator(good)
    # then: with a trailing newline it does not
    with pytest.raises(ValidationError):
        validator(good + "\n")
