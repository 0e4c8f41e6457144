import itertools

import factory
from django.contrib.auth import get_user_model

from plum.models import Member, Programme

_ids = itertools.count(1)


def next_id() -> int:
    return next(_ids)


class ProgrammeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Programme
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Programme {n}")
    slug = factory.Sequence(lambda n: f"programme-{n}")
    currency = "INR"
    timezone = "Asia/Kolkata"


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    programme = factory.SubFactory(ProgrammeFactory)
    external_id = factory.Sequence(lambda n: f"M-{n:05d}")
    name = factory.Sequence(lambda n: f"Member {n}")
    email = factory.Sequence(lambda n: f"member{n}@example.com")
    phone = factory.Sequence(lambda n: f"+9198{n:08d}")
    country = "IN"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def save_password(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()
