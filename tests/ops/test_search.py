"""Search: booking ID (any case, dashes optional), voucher code (normalised, exact), member
external id, e-mail (case-insensitive exact), phone (normalised). Another programme's objects
look exactly like missing ones. A code never travels in a URL or lands whole in the audit log."""

import re

import pytest
from django.urls import reverse

from campaigns.services.lookups import FAILED_LOOKUPS_LIMIT
from ops.selectors import booking_id_normalize, phone_normalize
from plum.models import AuditEvent
from tests.factories import MemberFactory
from tests.ops.conftest import issue
from tests.stubs import free_port

pytestmark = pytest.mark.django_db

QUERIES = 7  # session, user, 2 permission reads, scope check, members, ...: fixed


def _search(client, q):
    return client.post(reverse("ops:home"), {"q": q})


def _section(response, testid):
    page = response.content.decode()
    start = page.index(f'data-testid="{testid}"')
    return page[start : page.index("</table>", start)]


def _without_tokens(response, query):
    page = response.content.decode().replace(query, "Q")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)


def _found(response):
    result = response.context["result"]
    return (
        [o.booking_id for o in result.orders],
        [v.pk for v in result.vouchers],
        [m.pk for m in result.members],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PLM-ABCD-EFGH", "PLM-ABCD-EFGH"),
        ("plm-abcd-efgh", "PLM-ABCD-EFGH"),
        ("PLMABCDEFGH", "PLM-ABCD-EFGH"),
        (" plm abcd efgh ", "PLM-ABCD-EFGH"),
        ("abcd-efgh", "PLM-ABCD-EFGH"),
        ("PLM-ABCD-EFG", None),
        ("someone@example.com", None),
    ],
)
def test_booking_ids_are_normalised(text, expected):
    assert booking_id_normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+91 98123 45678", "+919812345678"),
        ("0091-98123-45678", "+919812345678"),
        ("919812345678", "+919812345678"),
        ("(+91) 98123.45678", "+919812345678"),
        ("12345", None),
        ("PLM-ABCD-EFGH", None),
    ],
)
def test_phones_are_normalised(text, expected):
    assert phone_normalize(text) == expected


@pytest.mark.parametrize(
    "variant",
    [
        lambda b: b,
        lambda b: b.lower(),
        lambda b: b.replace("-", ""),
        lambda b: b.lower().replace("-", " "),
    ],
)
def test_search_by_booking_id_in_any_form(as_user, agent_a, side_a, variant):
    # when
    response = _search(as_user(agent_a), variant(side_a.order.booking_id))
    # then
    assert response.status_code == 200
    assert _found(response) == ([side_a.order.booking_id], [], [])


@pytest.mark.parametrize(
    "variant",
    [
        lambda c: c,
        lambda c: c.lower(),
        lambda c: "-".join(c[i : i + 4] for i in range(0, len(c), 4)),
    ],
)
def test_search_by_voucher_code_finds_the_voucher_and_its_order_masked(
    as_user, agent_a, side_a, variant
):
    # given
    code = side_a.order.voucher.code
    # when
    response = _search(as_user(agent_a), variant(code))
    # then
    assert _found(response) == ([side_a.order.booking_id], [side_a.order.voucher_id], [])
    results = _section(response, "voucher-results") + _section(response, "order-results")
    assert code not in results
    assert side_a.order.voucher.masked_code in results


@pytest.mark.parametrize(
    "query",
    ["EMP-001", "asha@example.com", "ASHA@Example.COM", "+91 98123 45678", "919812345678"],
)
def test_search_by_member_id_email_or_phone(as_user, agent_a, side_a, side_b, query):
    # when
    response = _search(as_user(agent_a), query)
    # then
    assert _found(response) == ([], [], [side_a.member.pk])
    assert reverse("ops:member", args=[side_a.member.pk]) in response.content.decode()


def test_an_email_shared_by_several_members_lists_each(as_user, agent_a, side_a, programme):
    # given
    twin = MemberFactory(programme=programme, external_id="EMP-002", email="Asha@example.com")
    # when
    response = _search(as_user(agent_a), "asha@EXAMPLE.com")
    # then
    assert _found(response) == ([], [], [side_a.member.pk, twin.pk])


@pytest.mark.parametrize(
    "query",
    [
        lambda b: b.order.booking_id,
        lambda b: b.order.voucher.code,
        lambda b: b.member.external_id,
        lambda b: b.member.email,
        lambda b: b.member.phone,
    ],
)
def test_another_programmes_objects_look_exactly_like_missing_ones(
    as_user, agent_a, side_a, side_b, query
):
    # given
    client = as_user(agent_a)
    # when
    foreign = _search(client, query(side_b))
    missing = _search(client, "PLM-ZZZZ-ZZZZ")
    # then
    assert _found(foreign) == _found(missing) == ([], [], [])
    assert foreign.status_code == missing.status_code == 200
    assert _without_tokens(foreign, query(side_b)) == _without_tokens(missing, "PLM-ZZZZ-ZZZZ")


def test_the_search_is_a_post_so_no_query_lands_in_a_url(as_user, agent_a, side_a):
    # when
    page = as_user(agent_a).get(reverse("ops:home")).content.decode()
    # then
    assert '<form method="post" action="/ops/" class="card" role="search">' in page


def test_an_unknown_code_is_audited_with_its_last_four_characters_only(as_user, agent_a, side_a):
    # given
    guess = "ZZZZZZZZZZZZZZ7"
    # when
    response = _search(as_user(agent_a), guess)
    # then
    assert _found(response) == ([], [], [])
    event = AuditEvent.objects.get(action="voucher.lookup_failed")
    assert (event.actor_user_id, event.changes) == (agent_a.pk, {"code_last4": [None, "ZZZ7"]})
    assert not AuditEvent.objects.filter(changes__icontains=guess).exists()


def test_a_found_member_or_order_is_no_code_guess(as_user, agent_a, side_a):
    # when
    _search(as_user(agent_a), side_a.order.booking_id)
    _search(as_user(agent_a), side_a.member.external_id)
    # then
    assert not AuditEvent.objects.filter(action="voucher.lookup_failed").exists()


def test_guessing_codes_is_limited_and_says_so(as_user, agent_a, side_a):
    # given
    client = as_user(agent_a)
    for n in range(FAILED_LOOKUPS_LIMIT):
        _search(client, f"GUESS{n:04d}")
    # when: even the right code is refused now
    response = _search(client, side_a.order.voucher.code)
    # then
    assert _found(response) == ([], [], [])
    assert "Too many searches for unknown voucher codes" in response.content.decode()


def test_a_code_search_while_the_cache_is_down_is_refused_in_words_not_a_500(
    as_user, agent_a, side_a, settings
):
    # given: a signed-in agent, then the cache (the lookup limiter's counter) unreachable
    client = as_user(agent_a)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    # when
    by_code = _search(client, side_a.order.voucher.code)
    by_booking = _search(client, side_a.order.booking_id)
    # then: no code is looked up unguarded; other searches still work
    assert by_code.status_code == 200
    assert _found(by_code) == ([], [], [])
    assert "Voucher code search is paused" in by_code.content.decode()
    assert _found(by_booking)[0] == [side_a.order.booking_id]


def test_an_empty_query_is_an_error_in_words(as_user, agent_a):
    # when
    response = _search(as_user(agent_a), "   ")
    # then
    assert response.context["result"] is None
    assert "Enter something to search for." in response.content.decode()


def test_search_costs_the_same_queries_for_one_or_many_rows(
    as_user, agent_a, side_a, programme, django_assert_num_queries
):
    # given
    client = as_user(agent_a)
    client.get(reverse("ops:home"))  # the session is warm
    with django_assert_num_queries(QUERIES):
        _search(client, "asha@example.com")
    for n in range(10):
        twin = MemberFactory(programme=programme, external_id=f"TWIN-{n}", email="asha@example.com")
        issue(side_a.campaign, twin)
    # then
    with django_assert_num_queries(QUERIES):
        response = _search(client, "asha@example.com")
    assert len(response.context["result"].members) == 11
