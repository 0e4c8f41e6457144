"""The member storefront (/store/): every page and permission case, against the real views."""

import itertools
import re
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Voucher
from campaigns.services.campaigns import campaign_transition
from orders.models import Order, StoreRedeemToken
from orders.services.storefront import LOGIN_MAX_FAILURES, member_invite_token
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Member
from plum.services.programmes import member_link_user
from tests.campaigns.builders import make_reward
from tests.factories import MemberFactory, UserFactory
from wallets.models import Account, LedgerTransaction, Posting
from wallets.selectors import wallet_get
from wallets.services import points_earn

PASSWORD = "correct-horse-battery"
PRICE = 2  # points per rupee: the 500.00 value costs 1000 points, 1000.00 costs 2000
_keys = itertools.count(1)


def earn(member, points, reference="Welcome bonus"):
    points_earn(
        member=member,
        points=points,
        reference=reference,
        idempotency_key=f"store-earn-{next(_keys)}",
        actor=SYSTEM,
    )


def balance(member) -> int:
    wallet = wallet_get(member=member)
    return wallet.balance if wallet else 0


def ledger():
    return {
        "accounts": list(Account.objects.order_by("pk").values("pk", "balance")),
        "transactions": list(LedgerTransaction.objects.order_by("pk").values_list("pk", flat=True)),
        "postings": list(Posting.objects.order_by("pk").values_list("pk", flat=True)),
        "orders": list(Order.objects.order_by("pk").values_list("pk", flat=True)),
        "campaigns": list(Campaign.objects.order_by("pk").values("pk", "issued_count")),
    }


@pytest.fixture
def make_member_user():
    """make_member_user(programme, username) -> (member, user) linked by member_link_user."""

    def make(programme, username="asha", **fields):
        member = MemberFactory(programme=programme, **fields)
        user = UserFactory(username=username, email=member.email)
        member_link_user(member=member, user=user, actor=SYSTEM)
        return member, user

    return make


@pytest.fixture
def shopper(programme, make_member_user):
    member, user = make_member_user(programme, "asha", name="Asha")
    return member, user


@pytest.fixture
def browser(shopper):
    """A Django test client signed in as the shopper."""
    client = Client()
    client.force_login(shopper[1])
    return client


@pytest.fixture
def make_storefront(make_campaign):
    def make(programme, *, points_price=PRICE, reward_fields=None, **fields):
        reward = make_reward(
            currency=programme.currency, points_price=points_price, **(reward_fields or {})
        )
        return make_campaign(programme, reward=reward, in_storefront=True, **fields)

    return make


@pytest.fixture
def storefront(programme, make_storefront):
    return make_storefront(programme)


def confirm_token(client, campaign, value="500.00"):
    response = client.get(reverse("store:confirm", args=[campaign.pk]), {"value": value})
    assert response.status_code == 200
    return re.search(r'name="token" value="([^"]+)"', response.content.decode()).group(1)


# --- anonymous, staff, other members ---------------------------------------------------------

STORE_PAGES = [
    ("store:dashboard", []),
    ("store:catalog", []),
    ("store:orders", []),
    ("store_support:tickets", []),
    ("store:order", ["PLM-AAAA-BBBB"]),
    ("store:reward", [1]),
    ("store:confirm", [1]),
    ("store_support:report", ["PLM-AAAA-BBBB"]),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args"), STORE_PAGES)
def test_anonymous_is_sent_to_sign_in(name, args):
    # given / when
    url = reverse(name, args=args)
    response = Client().get(url)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('store:login')}?next={url.replace('/', '%2F')}"


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args"), STORE_PAGES)
def test_staff_without_member_is_refused_politely(name, args, make_user, programme):
    # given
    client = Client()
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(reverse(name, args=args))
    # then
    assert response.status_code == 403
    assert "This page is for members" in response.content.decode()


@pytest.mark.django_db
def test_anonymous_redeem_post_is_sent_to_sign_in():
    response = Client().post(reverse("store:redeem"), {"token": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("store:login"))


@pytest.mark.django_db
def test_another_members_booking_id_is_404(browser, programme, storefront, make_member_user):
    # given: another member of the same programme with an order
    other, _ = make_member_user(programme, "ravi")
    earn(other, 5000)
    from orders.services import order_redeem_points

    theirs = order_redeem_points(campaign=storefront, member=other, actor=SYSTEM)
    # when
    pages = [
        browser.get(reverse("store:order", args=[theirs.booking_id])),
        browser.post(reverse("store:reveal", args=[theirs.booking_id])),
        browser.get(reverse("store_support:report", args=[theirs.booking_id])),
        browser.post(
            reverse("store_support:report", args=[theirs.booking_id]),
            {"category": "other", "description": "mine now"},
        ),
    ]
    # then
    assert [p.status_code for p in pages] == [404, 404, 404, 404]
    assert not AuditEvent.objects.filter(action__in=["voucher.reveal", "ticket.open"]).exists()


@pytest.mark.django_db
def test_another_programmes_reward_is_404(browser, other_programme, make_storefront):
    theirs = make_storefront(other_programme, name="Beta offer")
    assert browser.get(reverse("store:reward", args=[theirs.pk])).status_code == 404
    assert (
        browser.get(reverse("store:confirm", args=[theirs.pk]), {"value": "500.00"}).status_code
        == 404
    )


# --- sign in, lockout, sign out, password reset, invitation ----------------------------------


@pytest.mark.django_db
def test_member_signs_in_and_out(shopper):
    # given
    client = Client()
    # when
    response = client.post(reverse("store:login"), {"username": "asha", "password": PASSWORD})
    # then
    assert response.status_code == 302
    assert response["Location"] == reverse("store:dashboard")
    assert client.get(reverse("store:dashboard")).status_code == 200
    # when
    response = client.post(reverse("store:logout"))
    # then
    assert response.status_code == 302
    assert client.get(reverse("store:dashboard")).status_code == 302


@pytest.mark.django_db
def test_wrong_password_says_so_in_words(shopper):
    response = Client().post(reverse("store:login"), {"username": "asha", "password": "nope"})
    assert response.status_code == 200
    assert "That username and password do not match" in response.content.decode()


@pytest.mark.django_db
def test_lockout_after_repeated_failures_is_per_account_and_ip_and_audited(shopper):
    # given: LOGIN_MAX_FAILURES wrong passwords from one IP
    client = Client(REMOTE_ADDR="203.0.113.5")
    codes = [
        client.post(reverse("store:login"), {"username": "asha", "password": "wrong"}).status_code
        for _ in range(LOGIN_MAX_FAILURES)
    ]
    # when: the right password from that IP
    locked = client.post(reverse("store:login"), {"username": "asha", "password": PASSWORD})
    # then: refused in words, not signed in
    assert codes == [200] * (LOGIN_MAX_FAILURES - 1) + [429]
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="store.login_failed", object_id="asha").count() == (
        LOGIN_MAX_FAILURES - 1
    )
    assert AuditEvent.objects.filter(action="store.login_locked", object_id="asha").count() == 1
    # and: the same account from another IP still signs in
    elsewhere = Client(REMOTE_ADDR="198.51.100.7")
    response = elsewhere.post(reverse("store:login"), {"username": "asha", "password": PASSWORD})
    assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.redis
def test_lockout_counter_is_atomic_under_parallel_failures(
    programme, make_member_user, settings, monkeypatch
):
    """20 parallel wrong passwords, all held after the lock check until every one has passed it,
    so none is refused before it is counted: the counter still sees every one (Redis INCR),
    exactly one reaches the limit and is audited as the lockout, the other 19 as failures, and
    the pair is locked."""
    from orders.views import accounts
    from tests.orders.test_order_concurrency import run_in_parallel

    make_member_user(programme, "asha")
    attempts = 20
    all_checked = threading.Barrier(attempts)
    checked = threading.local()
    real_check = accounts.login_is_locked

    def check_then_wait(**kwargs):
        locked = real_check(**kwargs)
        if threading.current_thread() is not threading.main_thread() and not getattr(
            checked, "done", False
        ):
            checked.done = True  # the first check of this request: wait for the other 19
            all_checked.wait(timeout=30)
        return locked

    monkeypatch.setattr(accounts, "login_is_locked", check_then_wait)

    def attempt():
        return (
            Client(REMOTE_ADDR="203.0.113.9")
            .post(reverse("store:login"), {"username": "asha", "password": "wrong"})
            .status_code
        )

    results = run_in_parallel([attempt] * attempts)
    # the counts that reach the limit and beyond answer 429; an earlier count answers 200, or 429
    # if the others have reached the limit by its check after counting
    assert set(results) <= {200, 429}
    assert results.count(429) >= attempts - LOGIN_MAX_FAILURES + 1
    assert attempt() == 429  # refused before its password is checked: not counted, not audited
    assert AuditEvent.objects.filter(action="store.login_locked").count() == 1
    assert AuditEvent.objects.filter(action="store.login_failed").count() == attempts - 1


@pytest.mark.django_db
def test_password_reset_by_email_over_smtp(shopper, smtp_server):
    # given
    member, user = shopper
    client = Client()
    # when
    response = client.post(reverse("store:password_reset"), {"email": member.email})
    # then: one e-mail through the real SMTP server, with a working link
    assert response.status_code == 302
    assert response["Location"] == reverse("store:password_reset_done")
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["To"] == member.email
    body = message.get_payload(decode=True).decode()
    link = re.search(r"http://testserver(/store/password-reset/\S+/)", body).group(1)
    form = client.get(link, follow=True)
    assert form.status_code == 200
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "plum-new-secret-2026", "new_password2": "plum-new-secret-2026"},
    )
    assert done.status_code == 302
    assert done["Location"] == reverse("store:password_reset_complete")
    user.refresh_from_db()
    assert user.check_password("plum-new-secret-2026")


@pytest.mark.django_db
def test_password_reset_for_unknown_address_sends_nothing(shopper, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    response = Client().post(reverse("store:password_reset"), {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []


@pytest.mark.django_db
def test_invitation_creates_the_members_account_once(programme):
    # given
    member = MemberFactory(programme=programme, email="neha@example.com")
    token = member_invite_token(member=member)
    url = reverse("store:invite", args=[token])
    client = Client()
    # when
    page = client.get(url)
    response = client.post(
        url, {"username": "neha", "password1": "plum-secret-2026", "password2": "plum-secret-2026"}
    )
    # then: linked, signed in, audited
    assert page.status_code == 200
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.user.username == "neha"
    assert member.user.email == "neha@example.com"
    assert client.get(reverse("store:dashboard")).status_code == 200
    assert (
        AuditEvent.objects.filter(action="member.link_user", object_id=str(member.pk)).count() == 1
    )
    # and: the link works once
    again = Client().post(
        url, {"username": "neha2", "password1": "plum-secret-2026", "password2": "plum-secret-2026"}
    )
    assert again.status_code == 400
    assert "already been used" in again.content.decode()
    assert not get_user_model().objects.filter(username="neha2").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "neha", "password1": "123", "password2": "123"}, "too short"),
        ({"username": "neha", "password1": "plum-secret-2026", "password2": "x"}, "differ"),
        (
            {"username": "taken", "password1": "plum-secret-2026", "password2": "plum-secret-2026"},
            "taken",
        ),
    ],
)
def test_invitation_refusals_change_nothing(programme, data, message):
    UserFactory(username="taken")
    member = MemberFactory(programme=programme)
    users = get_user_model().objects.count()
    response = Client().post(
        reverse("store:invite", args=[member_invite_token(member=member)]), data
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    member.refresh_from_db()
    assert member.user_id is None
    assert get_user_model().objects.count() == users


@pytest.mark.django_db
def test_forged_invitation_is_refused():
    response = Client().get(reverse("store:invite", args=["not-a-token"]))
    assert response.status_code == 400


# --- dashboard, catalog ----------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_shows_balance_activity_and_orders(browser, shopper, storefront):
    # given
    member = shopper[0]
    earn(member, 3000, reference="Q3 sales award")
    from orders.services import order_redeem_points

    order = order_redeem_points(campaign=storefront, member=member, actor=SYSTEM)
    # when
    response = browser.get(reverse("store:dashboard"))
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert '<span id="balance">2000</span> points' in html
    assert "Q3 sales award" in html and "+3000" in html
    assert order.booking_id in html and "-1000" in html


def test_store_assets_are_served_by_the_app(client, db):
    for asset in ["/static/store/store.css", "/static/store/once.js"]:
        response = client.get(asset)
        assert response.status_code == 200
        b"".join(response.streaming_content)


@pytest.mark.django_db
def test_catalog_lists_only_the_programmes_priced_active_storefront_campaigns(
    browser, programme, other_programme, make_storefront, make_campaign
):
    # given
    shown = make_storefront(programme, name="Shown", reward_fields={"name": "Coffee card"})
    make_storefront(other_programme, reward_fields={"name": "Beta reward"})
    make_storefront(programme, active=False, reward_fields={"name": "Draft reward"})
    make_storefront(programme, points_price=None, reward_fields={"name": "Unpriced reward"})
    make_campaign(programme, reward=make_reward(name="Not in store", points_price=2))
    # when
    html = browser.get(reverse("store:catalog")).content.decode()
    # then
    assert "Coffee card" in html
    assert f'href="/store/rewards/{shown.pk}/"' in html
    assert "1000</strong> points" in html
    for hidden in ["Beta reward", "Draft reward", "Unpriced reward", "Not in store"]:
        assert hidden not in html


@pytest.mark.django_db
def test_catalog_filters_search_sort_and_pages(browser, programme, make_storefront):
    # given
    cheap = make_storefront(
        programme, points_price=1, reward_fields={"name": "Tea IN", "merchant": "Chai Co"}
    )
    dear = make_storefront(
        programme,
        points_price=3,
        reward_fields={"name": "Book US", "country": "US", "kind": "experience"},
    )
    mid = make_storefront(
        programme, points_price=2, reward_fields={"name": "Tea US", "country": "US"}
    )

    def names(**params):
        html = browser.get(reverse("store:catalog"), params).content.decode()
        return re.findall(r'<h2><a href="/store/rewards/\d+/">([^<]+)</a>', html)

    # then
    assert names() == ["Tea IN", "Tea US", "Book US"]
    assert names(sort="-points") == ["Book US", "Tea US", "Tea IN"]
    assert names(sort="name") == ["Book US", "Tea IN", "Tea US"]
    assert names(country="US") == ["Tea US", "Book US"]
    assert names(kind="experience") == ["Book US"]
    assert names(q="tea") == ["Tea IN", "Tea US"]
    assert names(q="chai") == ["Tea IN"]
    brand = cheap.reward.merchant_id
    assert names(brand=str(brand)) == ["Tea IN"]
    assert names(after=f"{mid.value * 2:.0f}~{mid.pk}") == ["Book US"]
    assert dear.pk


@pytest.mark.django_db
def test_catalog_pages_with_a_cursor(browser, programme, make_storefront, settings):
    # given: 30 rewards, 24 per page
    for i in range(30):
        make_storefront(programme, reward_fields={"name": f"Reward {i:02d}"})
    # when
    first = browser.get(reverse("store:catalog"))
    next_url = re.search(r'href="([^"]+)" rel="next"', first.content.decode()).group(1)
    second = browser.get(next_url.replace("&amp;", "&"))
    # then
    assert first.content.decode().count('class="card reward"') == 24
    assert second.content.decode().count('class="card reward"') == 6
    assert 'rel="next"' not in second.content.decode()


@pytest.mark.django_db
def test_bad_catalog_parameters_are_ignored_not_500(browser, storefront):
    response = browser.get(
        reverse("store:catalog"),
        {"sort": "drop table", "after": "x~y", "brand": "abc", "kind": "?"},
    )
    assert response.status_code == 200


# --- redeem ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_reward_page_offers_its_denominations_with_points(browser, shopper, storefront):
    earn(shopper[0], 1500)
    html = browser.get(reverse("store:reward", args=[storefront.pk])).content.decode()
    assert "500.00 INR — 1000 points" in html
    assert "1000.00 INR — 2000 points" in html
    assert "<strong>1500</strong> points" in html


@pytest.mark.django_db
def test_confirm_shows_cost_and_balance_after(browser, shopper, storefront):
    earn(shopper[0], 1500)
    response = browser.get(reverse("store:confirm", args=[storefront.pk]), {"value": "500.00"})
    html = response.content.decode()
    assert 'data-testid="cost">1000 points' in html
    assert 'data-testid="balance-after">500 points' in html
    assert StoreRedeemToken.objects.count() == 1


@pytest.mark.django_db
def test_confirm_with_a_value_not_offered_is_400(browser, shopper, storefront):
    earn(shopper[0], 5000)
    response = browser.get(reverse("store:confirm", args=[storefront.pk]), {"value": "123.00"})
    assert response.status_code == 400
    assert "Choose one of the values offered" in response.content.decode()
    assert StoreRedeemToken.objects.count() == 0


@pytest.mark.django_db
def test_redeem_creates_one_order_and_burns_the_points(browser, shopper, storefront):
    # given
    member = shopper[0]
    earn(member, 2500)
    token = confirm_token(browser, storefront, "1000.00")
    # when
    response = browser.post(reverse("store:redeem"), {"token": token})
    # then
    order = Order.objects.get(member=member)
    assert response.status_code == 302
    assert response["Location"] == reverse("store:order", args=[order.booking_id]) + "?new=1"
    assert (order.value, order.points, order.status) == (Decimal("1000.00"), 2000, "completed")
    assert balance(member) == 500
    page = browser.get(response["Location"]).content.decode()
    assert "Done! Your reward is ordered" in page and order.booking_id in page


@pytest.mark.django_db
def test_double_submit_and_refresh_create_one_order(browser, shopper, storefront):
    # given
    member = shopper[0]
    earn(member, 5000)
    token = confirm_token(browser, storefront)
    # when: the same confirmation posted three times
    responses = [browser.post(reverse("store:redeem"), {"token": token}) for _ in range(3)]
    # then
    order = Order.objects.get(member=member)
    assert [r.status_code for r in responses] == [302, 302, 302]
    url = reverse("store:order", args=[order.booking_id])
    assert [r["Location"] for r in responses] == [
        f"{url}?new=1",
        f"{url}?again=1",
        f"{url}?again=1",
    ]
    assert balance(member) == 4000
    assert "You were charged once" in browser.get(responses[1]["Location"]).content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
def test_parallel_submits_of_one_page_create_one_order(
    programme, make_member_user, make_storefront
):
    """10 submits of one confirmation page at once, each on its own connection: one order."""
    from tests.orders.test_order_concurrency import run_in_parallel

    member, user = make_member_user(programme, "asha")
    campaign = make_storefront(programme)
    earn(member, 50_000)
    client = Client()
    client.force_login(user)
    token = confirm_token(client, campaign)
    cookies = client.cookies

    def submit():
        c = Client()
        c.cookies = cookies
        return c.post(reverse("store:redeem"), {"token": token}).status_code

    codes = run_in_parallel([submit] * 10)
    assert Order.objects.filter(member=member).count() == 1
    assert balance(member) == 49_000
    assert set(codes) <= {302, 409}


@pytest.mark.django_db
def test_a_token_of_another_member_is_refused(
    browser, shopper, storefront, programme, make_member_user
):
    other, user = make_member_user(programme, "ravi")
    earn(other, 5000)
    other_client = Client()
    other_client.force_login(user)
    token = confirm_token(other_client, storefront)
    earn(shopper[0], 5000)
    response = browser.post(reverse("store:redeem"), {"token": token})
    assert response.status_code == 409
    assert "This confirmation page has expired" in response.content.decode()
    assert Order.objects.count() == 0


def _end(campaign):
    campaign_transition(campaign=campaign, action="end", actor=SYSTEM)


def _exhaust(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(max_rewards=0)


def _cap(campaign):
    Campaign.objects.filter(pk=campaign.pk).update(per_member_cap=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("points", "change", "words"),
    [
        (
            1500,
            "spend",
            "You do not have enough points for this reward: it costs 1,000 points and your "
            "balance is 500 points",
        ),
        (5000, "end", "This offer has ended or is paused"),
        (5000, "exhaust", "This reward is sold out"),
        (5000, "cap", "You have already redeemed this reward as many times as the offer allows"),
    ],
)
def test_refusals_are_shown_in_words_and_change_nothing(
    browser, shopper, storefront, points, change, words
):
    # given: the confirmation page was shown, then something changed
    from orders.services import order_redeem_points
    from wallets.services import points_burn

    member = shopper[0]
    earn(member, points)
    token = confirm_token(browser, storefront)
    if change == "spend":
        points_burn(
            member=member,
            points=1000,
            reason="correction",
            reference="elsewhere",
            idempotency_key="spend-elsewhere",
            actor=SYSTEM,
        )
    elif change == "end":
        _end(storefront)
    elif change == "exhaust":
        _exhaust(storefront)
    else:
        _cap(storefront)
        storefront.refresh_from_db()
        order_redeem_points(campaign=storefront, member=member, actor=SYSTEM)
    before = ledger()
    # when
    response = browser.post(reverse("store:redeem"), {"token": token})
    # then
    assert response.status_code == 409
    html = response.content.decode()
    assert words in html and "Nothing was charged" in html
    assert ledger() == before
    # and: the token was released, so nothing is stuck claimed
    assert StoreRedeemToken.objects.get(token=token).claimed_at is None


@pytest.mark.django_db
def test_confirm_beyond_the_balance_offers_no_button(browser, shopper, storefront):
    earn(shopper[0], 999)
    html = browser.get(
        reverse("store:confirm", args=[storefront.pk]), {"value": "500.00"}
    ).content.decode()
    assert (
        "You do not have enough points for this reward: it costs 1,000 points and your "
        "balance is 999 points" in html
    )
    assert 'id="confirm-button"' not in html
    assert StoreRedeemToken.objects.count() == 0


# --- order history, voucher reveal -----------------------------------------------------------


@pytest.fixture
def bought(shopper, storefront):
    from orders.services import order_redeem_points

    earn(shopper[0], 10_000)
    return order_redeem_points(campaign=storefront, member=shopper[0], actor=SYSTEM)


@pytest.mark.django_db
def test_history_lists_every_order_with_booking_id_points_and_status(browser, bought):
    html = browser.get(reverse("store:orders")).content.decode()
    assert bought.booking_id in html
    assert ">1000</td>" in html
    assert "Ready" in html
    assert bought.voucher.code not in html


@pytest.mark.django_db
def test_history_pages_with_a_keyset(browser, shopper, storefront):
    from orders.services import order_redeem_points

    earn(shopper[0], 30_000)
    for _ in range(26):
        order_redeem_points(campaign=storefront, member=shopper[0], actor=SYSTEM)
    first = browser.get(reverse("store:orders")).content.decode()
    older = re.search(r'href="([^"]+)" rel="next"', first).group(1)
    second = browser.get(older).content.decode()
    assert first.count("<tr>") - 1 == 24
    assert second.count("<tr>") - 1 == 2


@pytest.mark.django_db
def test_voucher_code_is_revealed_on_request_and_audited(browser, bought):
    # given
    url = reverse("store:order", args=[bought.booking_id])
    page = browser.get(url).content.decode()
    assert bought.voucher.code not in page
    # when
    response = browser.post(reverse("store:reveal", args=[bought.booking_id]))
    # then
    html = response.content.decode()
    assert response.status_code == 200
    assert f'data-testid="voucher-code" aria-label="Voucher code">{bought.voucher.code}<' in html
    assert "500.00 INR" in html
    assert response["Cache-Control"].startswith("max-age=0")
    event = AuditEvent.objects.get(action="voucher.reveal")
    assert event.object_id == str(bought.voucher_id)
    assert event.actor_label == "asha"


@pytest.mark.django_db
def test_reveal_of_a_cancelled_order_shows_no_code(browser, bought):
    from orders.services import order_cancel

    order_cancel(order=bought, actor=SYSTEM)
    response = browser.post(reverse("store:reveal", args=[bought.booking_id]))
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="voucher.reveal").exists()


@pytest.mark.django_db
def test_reveal_by_get_is_refused(browser, bought):
    assert browser.get(reverse("store:reveal", args=[bought.booking_id])).status_code == 405


# --- query counts ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "max_queries"),
    [("store:dashboard", 6), ("store:catalog", 6), ("store:orders", 4)],
)
def test_pages_run_a_fixed_small_number_of_queries(
    browser, shopper, programme, make_storefront, name, max_queries, django_assert_max_num_queries
):
    # given: several rewards and orders, so a per-row query would show
    from orders.services import order_redeem_points

    earn(shopper[0], 100_000)
    for i in range(6):
        campaign = make_storefront(programme, reward_fields={"name": f"R{i}"})
        order_redeem_points(campaign=campaign, member=shopper[0], actor=SYSTEM)
    browser.get(reverse(name))  # warm the facet cache
    # when / then
    with django_assert_max_num_queries(max_queries):
        assert browser.get(reverse(name)).status_code == 200


@pytest.mark.django_db
def test_order_detail_runs_a_fixed_number_of_queries(
    browser, bought, django_assert_max_num_queries
):
    with django_assert_max_num_queries(4):
        assert browser.get(reverse("store:order", args=[bought.booking_id])).status_code == 200


@pytest.mark.django_db
def test_vouchers_not_touched_by_page_views(browser, bought):
    before = list(Voucher.objects.values())
    for name in ["store:dashboard", "store:orders"]:
        browser.get(reverse(name))
    browser.get(reverse("store:order", args=[bought.booking_id]))
    assert list(Voucher.objects.values()) == before
    assert timezone.now() - bought.created_at < timedelta(minutes=5)
    assert Member.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.postgres
def test_store_listing_follows_campaign_and_reward_changes(programme, make_storefront):
    """The catalog's sort keys are kept by Postgres triggers: a new campaign is listed with its
    points cost, a price or value change moves it, ending or leaving the storefront unlists
    it, and issuing (counter updates) does not touch the listing."""
    from campaigns.models import Reward
    from orders.models import StoreListing

    campaign = make_storefront(programme)
    listing = StoreListing.objects.get(campaign=campaign)
    assert (listing.points_cost, listing.listed, listing.programme_id) == (1000, True, programme.pk)
    Reward.objects.filter(pk=campaign.reward_id).update(points_price=3, name="Renamed")
    listing.refresh_from_db()
    assert (listing.points_cost, listing.name) == (1500, "Renamed")
    Campaign.objects.filter(pk=campaign.pk).update(issued_count=1)
    assert StoreListing.objects.get(campaign=campaign).points_cost == 1500
    Campaign.objects.filter(pk=campaign.pk).update(in_storefront=False)
    assert StoreListing.objects.get(campaign=campaign).listed is False
    Campaign.objects.filter(pk=campaign.pk).update(in_storefront=True)
    campaign_transition(campaign=campaign, action="end", actor=SYSTEM)
    assert StoreListing.objects.get(campaign=campaign).listed is False
    Reward.objects.filter(pk=campaign.reward_id).update(points_price=None)
    assert StoreListing.objects.get(campaign=campaign).points_cost is None


@pytest.mark.django_db
@pytest.mark.postgres
def test_store_listing_follows_campaign_dates(programme, make_storefront, browser):
    from orders.models import StoreListing

    campaign = make_storefront(programme, reward_fields={"name": "Dated reward"})
    later = timezone.now() + timedelta(days=3)
    Campaign.objects.filter(pk=campaign.pk).update(starts_at=later, ends_at=later + timedelta(1))
    assert StoreListing.objects.get(campaign=campaign).starts_at == later
    assert "Dated reward" not in browser.get(reverse("store:catalog")).content.decode()
