import factory

from campaigns.models import Merchant, Reward


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Merchant {n}")


class RewardFactory(factory.django.DjangoModelFactory):
    """Catalog rows are set-up data (loaded by import_catalog), so tests create them directly."""

    class Meta:
        model = Reward

    merchant = factory.SubFactory(MerchantFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Reward {n}")
    kind = Reward.Kind.GIFT_CARD
    country = "IN"
    currency = "INR"
