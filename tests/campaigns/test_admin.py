"""The campaigns admin: scoped like every other door (another programme's objects are 404),
view-only for support agents and finance, and every action goes through a service and leaves
an audit event; a refused action changes nothing."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, Merchant, Reward, Voucher
from campaigns.services.campaigns import campaign_create, campaign_transition
from campaigns.services.codes import codes_generate
from campaigns.services.vouchers import voucher_flag, voucher_issue, voucher_redeem
from plum import roles
from plum.actors import SYSTEM
from plum.models import AuditEvent, Job
from plum.services.jobs import job_run
from plum.services.programmes import role_grant
from tests.factories import MemberFactory

D = Decimal
pytestmark = pytest.mark.django_db

ACTION_CHECKBOX = "_selected_action"


# set-up ---------------------------------------------------------------------------------------


@pytest.fixture
def merchant():
    return Merchant.objects.create(name="Lotus Jewellers")


@pytest.fixture
def reward(merchant):
    return Reward.objects.create(
        merchant=merchant,
        sku="LOTUS-GC-IN",
        name="Lotus gift card",
        kind=Reward.Kind.GIFT_CARD,
        country="IN",
        currency="INR",
        denominations=["500.00", "1000.00"],
    )


def make_campaign(programme, reward, *, name="Diwali bonus", active=True, **fields):
    defaults = {
        "name": name,
        "reward": reward,
        "value": D("500.00"),
        "starts_at": timezone.now() - timedelta(days=1),
        "expiry_days": 30,
    }
    campaign = campaign_create(programme=programme, actor=SYSTEM, **{**defaults, **fields})
    if active:
        campaign = campaign_transition(campaign=campaign, action="activate", actor=SYSTEM)
    return campaign


def issue(campaign, member=None):
    member = member or MemberFactory(programme=campaign.programme)
    with transaction.atomic():
        return voucher_issue(campaign=campaign, member=member, actor=SYSTEM)


def fill_pool(campaign, count, *, is_test=False):
    job = codes_generate(campaign=campaign, count=count, is_test=is_test, actor=SYSTEM)
    job_run(job_id=job.pk)  # explicit: Celery runs it eagerly only without a broker
    return job


@pytest.fixture
def campaign_a(programme, reward):
    return make_campaign(programme, reward, name="Alpha Diwali")


@pytest.fixture
def campaign_b(other_programme, reward):
    return make_campaign(other_programme, reward, name="Beta Holi")


@pytest.fixture
def voucher_a(campaign_a):
    return issue(campaign_a)


@pytest.fixture
def voucher_b(campaign_b):
    return issue(campaign_b)


@pytest.fixture
def manager(make_user, programme):
    return make_user(roles.PROGRAMME_MANAGER, programme)


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def url(name, *args):
    return reverse(f"admin:campaigns_{name}", args=args)


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def audit_actions(**filters) -> list[str]:
    return list(
        AuditEvent.objects.filter(**filters).order_by("id").values_list("action", flat=True)
    )


def voucher_state(voucher) -> dict:
    return Voucher.objects.filter(pk=voucher.pk).values().get()


def campaign_state(campaign) -> dict:
    return Campaign.objects.filter(pk=campaign.pk).values().get()


def post_action(client, model, action, objects):
    """Run an admin action and follow its redirect (which shows, and so consumes, the
    messages it left)."""
    return client.post(
        url(f"{model}_changelist"),
        {"action": action, ACTION_CHECKBOX: [o.pk for o in objects], "index": 0},
        follow=True,
    )


def redirected_to_changelist(response, model) -> bool:
    return response.redirect_chain == [(url(f"{model}_changelist"), 302)]


# permission matrix: anonymous ------------------------------------------------------------------

PAGES = {
    "campaign changelist": lambda c, v: url("campaign_changelist"),
    "campaign add": lambda c, v: url("campaign_add"),
    "campaign change": lambda c, v: url("campaign_change", c.pk),
    "generate codes": lambda c, v: url("campaign_generate_codes", c.pk),
    "import codes": lambda c, v: url("campaign_import_codes", c.pk),
    "voucher changelist": lambda c, v: url("voucher_changelist"),
    "voucher change": lambda c, v: url("voucher_change", v.pk),
    "voucher reveal": lambda c, v: url("voucher_reveal", v.pk),
    "reward changelist": lambda c, v: url("reward_changelist"),
    "merchant changelist": lambda c, v: url("merchant_changelist"),
}


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_user_is_sent_to_the_login_page(client, campaign_a, voucher_a, page):
    # given
    path = PAGES[page](campaign_a, voucher_a)
    # when
    response = client.get(path)
    # then
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


# permission matrix: lists are scoped -----------------------------------------------------------


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_campaign_changelist_lists_only_the_users_programme(
    client, make_user, programme, campaign_a, campaign_b, role
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(url("campaign_changelist"))
    # then
    assert response.status_code == 200
    assert [c.name for c in listed(response)] == ["Alpha Diwali"]
    assert "Beta" not in response.content.decode()


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
def test_voucher_changelist_lists_only_the_users_programme(
    client, make_user, programme, voucher_a, voucher_b, role
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(url("voucher_changelist"))
    # then
    assert response.status_code == 200
    assert [v.pk for v in listed(response)] == [voucher_a.pk]
    assert "Beta Holi" not in response.content.decode()


def test_platform_admin_lists_every_programme(
    client, make_user, campaign_a, campaign_b, voucher_a, voucher_b
):
    # given
    client.force_login(make_user(roles.PLATFORM_ADMIN))
    # when
    campaigns = client.get(url("campaign_changelist"))
    vouchers = client.get(url("voucher_changelist"))
    # then
    assert sorted(c.name for c in listed(campaigns)) == ["Alpha Diwali", "Beta Holi"]
    assert sorted(v.pk for v in listed(vouchers)) == sorted([voucher_a.pk, voucher_b.pk])


OTHER_PROGRAMME_PAGES = {
    "campaign change": lambda c, v: url("campaign_change", c.pk),
    "campaign history": lambda c, v: url("campaign_history", c.pk),
    "generate codes": lambda c, v: url("campaign_generate_codes", c.pk),
    "import codes": lambda c, v: url("campaign_import_codes", c.pk),
    "voucher change": lambda c, v: url("voucher_change", v.pk),
    "voucher reveal": lambda c, v: url("voucher_reveal", v.pk),
}


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT, roles.FINANCE])
@pytest.mark.parametrize("page", OTHER_PROGRAMME_PAGES)
def test_pages_of_another_programme_are_404(
    client, make_user, programme, campaign_b, voucher_b, role, page
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(OTHER_PROGRAMME_PAGES[page](campaign_b, voucher_b))
    # then
    assert response.status_code == 404


def test_revealing_a_code_of_another_programme_is_404_and_not_audited(manager_client, voucher_b):
    # given
    before = AuditEvent.objects.count()
    # when
    response = manager_client.post(url("voucher_reveal", voucher_b.pk))
    # then
    assert response.status_code == 404
    assert voucher_b.code not in response.content.decode()
    assert AuditEvent.objects.count() == before


def test_changing_a_campaign_of_another_programme_is_404_and_changes_nothing(
    manager_client, campaign_b
):
    # given
    before = campaign_state(campaign_b)
    # when
    response = manager_client.post(
        url("campaign_change", campaign_b.pk), {"name": "Hijacked", "_save": "Save"}
    )
    # then
    assert response.status_code == 404
    assert campaign_state(campaign_b) == before


# permission matrix: view-only roles -------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_view_only_roles_see_a_read_only_campaign_page(
    client, make_user, programme, campaign_a, role
):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(url("campaign_change", campaign_a.pk))
    # then
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["may_manage_codes"] is False
    assert url("campaign_generate_codes", campaign_a.pk) not in response.content.decode()


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_view_only_roles_may_not_add_or_change_campaigns(
    client, make_user, programme, campaign_a, role
):
    # given
    client.force_login(make_user(role, programme))
    before = campaign_state(campaign_a)
    # when
    add = client.get(url("campaign_add"))
    change = client.post(
        url("campaign_change", campaign_a.pk), {"name": "Renamed", "_save": "Save"}
    )
    generate = client.post(url("campaign_generate_codes", campaign_a.pk), {"count": "5"})
    # then
    assert (add.status_code, change.status_code, generate.status_code) == (403, 403, 403)
    assert campaign_state(campaign_a) == before
    assert Job.objects.count() == 0


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
@pytest.mark.parametrize("model", ["campaign", "voucher"])
def test_view_only_roles_get_no_actions(client, make_user, programme, voucher_a, role, model):
    # given
    client.force_login(make_user(role, programme))
    # when
    response = client.get(url(f"{model}_changelist"))
    # then
    assert response.status_code == 200
    assert response.context["action_form"] is None


@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_an_action_posted_by_a_view_only_role_changes_nothing(
    client, make_user, programme, campaign_a, voucher_a, role
):
    # given
    client.force_login(make_user(role, programme))
    before = (campaign_state(campaign_a), voucher_state(voucher_a))
    audit_before = AuditEvent.objects.count()
    # when
    pause = post_action(client, "campaign", "pause", [campaign_a])
    flag = post_action(client, "voucher", "flag", [voucher_a])
    # then: without actions the POST is just the list again
    assert (pause.status_code, flag.status_code) == (200, 200)
    assert (message_texts(pause), message_texts(flag)) == ([], [])
    assert (campaign_state(campaign_a), voucher_state(voucher_a)) == before
    assert AuditEvent.objects.count() == audit_before


def test_manager_gets_an_editable_campaign_page_with_code_tools(manager_client, campaign_a):
    # when
    response = manager_client.get(url("campaign_change", campaign_a.pk))
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["has_change_permission"] is True
    assert url("campaign_generate_codes", campaign_a.pk) in content
    assert url("campaign_import_codes", campaign_a.pk) in content


# campaign add and change ------------------------------------------------------------------------


def campaign_form(programme, reward, **overrides) -> dict:
    data = {
        "programme": programme.pk,
        "name": "Summer sale",
        "reward": reward.pk,
        "value": "1000.00",
        "starts_at_0": "2030-06-01",
        "starts_at_1": "09:00:00",
        "ends_at_0": "2030-08-31",
        "ends_at_1": "18:00:00",
        "max_rewards": "100",
        "budget": "100000.00",
        "per_member_cap": "1",
        "approval_mode": "auto",
        "code_source": "generated",
        "code_prefix": "SUM",
        "code_length": "13",
        "expiry_days": "90",
        "default_channel": "email",
        "_save": "Save",
    }
    return {**data, **overrides}


def test_manager_adds_a_campaign_through_the_service(manager_client, manager, programme, reward):
    # when
    response = manager_client.post(url("campaign_add"), campaign_form(programme, reward))
    # then
    assert response.status_code == 302
    campaign = Campaign.objects.get(name="Summer sale")
    assert response["Location"] == url("campaign_changelist")
    assert (
        campaign.programme_id,
        campaign.reward_id,
        campaign.value,
        campaign.currency,
        campaign.status,
        campaign.max_rewards,
        campaign.budget,
        campaign.code_prefix,
        campaign.expiry_days,
        campaign.starts_at,
    ) == (
        programme.pk,
        reward.pk,
        D("1000.00"),
        "INR",
        "draft",
        100,
        D("100000.00"),
        "SUM",
        90,
        datetime(2030, 6, 1, 9, 0, tzinfo=ZoneInfo("UTC")),
    )
    event = AuditEvent.objects.get(action="campaign.create")
    assert (event.object_id, event.actor_user_id, event.programme_id) == (
        str(campaign.pk),
        manager.pk,
        programme.pk,
    )


def test_a_campaign_the_service_refuses_shows_its_field_error_and_writes_nothing(
    manager_client, programme, reward
):
    # given: O is not in the code alphabet, which only the service checks
    data = campaign_form(programme, reward, code_prefix="SOON")
    # when
    response = manager_client.post(url("campaign_add"), data)
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "code_prefix": ["Prefix characters must come from ABCDEFGHJKMNPQRSTUVWXYZ23456789 (not O)."]
    }
    assert Campaign.objects.count() == 0
    assert audit_actions(action__startswith="campaign.") == []


def test_a_campaign_value_the_reward_is_not_sold_at_is_a_form_error(
    manager_client, programme, reward
):
    # when
    response = manager_client.post(
        url("campaign_add"), campaign_form(programme, reward, value="750")
    )
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "value": ["The reward is not sold at this value."]
    }
    assert Campaign.objects.count() == 0


def test_manager_cannot_add_a_campaign_to_another_programme(
    manager_client, other_programme, reward
):
    # when
    response = manager_client.post(url("campaign_add"), campaign_form(other_programme, reward))
    # then
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["programme"]
    assert Campaign.objects.count() == 0


def campaign_change_form(campaign, **overrides) -> dict:
    data = {
        "name": campaign.name,
        "ends_at_0": "",
        "ends_at_1": "",
        "max_rewards": "" if campaign.max_rewards is None else str(campaign.max_rewards),
        "budget": "",
        "per_member_cap": "",
        "approval_mode": campaign.approval_mode,
        "expiry_days": str(campaign.expiry_days or ""),
        "default_channel": "",
        "redemptions-TOTAL_FORMS": "0",
        "_save": "Save",
    }
    return {**data, **overrides}


def test_manager_changes_a_campaign_through_the_service(manager_client, manager, campaign_a):
    # when
    response = manager_client.post(
        url("campaign_change", campaign_a.pk),
        campaign_change_form(campaign_a, name="Alpha Diwali 2", max_rewards="50"),
    )
    # then
    assert response.status_code == 302
    campaign_a.refresh_from_db()
    assert (campaign_a.name, campaign_a.max_rewards) == ("Alpha Diwali 2", 50)
    event = AuditEvent.objects.get(action="campaign.update")
    assert event.actor_user_id == manager.pk
    assert event.changes == {"name": ["Alpha Diwali", "Alpha Diwali 2"], "max_rewards": [None, 50]}


def test_a_limit_below_what_was_issued_is_refused_on_its_field(manager_client, campaign_a):
    # given
    issue(campaign_a)
    issue(campaign_a)
    before = campaign_state(campaign_a)
    # when
    response = manager_client.post(
        url("campaign_change", campaign_a.pk), campaign_change_form(campaign_a, max_rewards="1")
    )
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "max_rewards": ["2 rewards were already issued."]
    }
    assert campaign_state(campaign_a) == before
    assert audit_actions(action="campaign.update") == []


def test_an_ended_campaign_is_read_only(manager_client, campaign_a):
    # given
    campaign_transition(campaign=campaign_a, action="end", actor=SYSTEM)
    # when
    page = manager_client.get(url("campaign_change", campaign_a.pk))
    post = manager_client.post(
        url("campaign_change", campaign_a.pk), campaign_change_form(campaign_a, name="Again")
    )
    # then
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert post.status_code == 403
    assert Campaign.objects.get(pk=campaign_a.pk).name == "Alpha Diwali"


# campaign actions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "start", "end", "verb"),
    [
        ("activate", [], "active", "Activated"),
        ("pause", ["activate"], "paused", "Paused"),
        ("resume", ["activate", "pause"], "active", "Resumed"),
        ("end", ["activate"], "ended", "Ended"),
    ],
)
def test_campaign_actions_go_through_the_service_and_are_audited(
    manager_client, manager, programme, reward, action, start, end, verb
):
    # given
    campaign = make_campaign(programme, reward, name="Spring", active=False)
    for step in start:
        campaign_transition(campaign=campaign, action=step, actor=SYSTEM)
    # when
    response = post_action(manager_client, "campaign", action, [campaign])
    # then
    assert redirected_to_changelist(response, "campaign")
    assert Campaign.objects.get(pk=campaign.pk).status == end
    assert message_texts(response) == [f"{verb} 1 campaign(s): “Spring”."]
    event = AuditEvent.objects.get(action=f"campaign.{action}", actor_user_id=manager.pk)
    assert event.object_id == str(campaign.pk)


def test_a_refused_campaign_action_is_reported_and_changes_nothing(
    manager_client, programme, reward, campaign_a
):
    # given
    ended = make_campaign(programme, reward, name="Old")
    campaign_transition(campaign=ended, action="end", actor=SYSTEM)
    before = campaign_state(ended)
    # when
    response = post_action(manager_client, "campaign", "pause", [ended, campaign_a])
    # then
    paused, refused = message_texts(response)
    assert paused == "Paused 1 campaign(s): “Alpha Diwali”."
    # (the reason is the service's InvalidTransitionError message)
    assert (
        refused == "Could not pause 1 campaign(s): “Old” (Cannot pause a campaign that is ended.)."
    )
    assert campaign_state(ended) == before
    assert Campaign.objects.get(pk=campaign_a.pk).status == "paused"
    assert AuditEvent.objects.filter(action="campaign.pause", object_id=str(ended.pk)).count() == 0


def test_an_action_on_a_campaign_the_user_only_views_is_refused(
    client, make_user, programme, other_programme, campaign_b
):
    # given: manager of A, support agent of B
    user = make_user(roles.PROGRAMME_MANAGER, programme)
    role_grant(user=user, role=roles.SUPPORT_AGENT, programme=other_programme, actor=SYSTEM)
    client.force_login(user)
    # when
    response = post_action(client, "campaign", "end", [campaign_b])
    # then
    assert message_texts(response) == [
        "Could not end 1 campaign(s): “Beta Holi” (you do not manage its programme)."
    ]
    assert Campaign.objects.get(pk=campaign_b.pk).status == "active"
    assert audit_actions(action="campaign.end") == []


# generate and import codes -----------------------------------------------------------------------


def test_generate_codes_queues_a_job_and_shows_its_progress(manager_client, manager, campaign_a):
    # when
    response = manager_client.post(
        url("campaign_generate_codes", campaign_a.pk), {"count": "5", "is_test": "on"}
    )
    # then
    job = Job.objects.get()
    job_url = reverse("admin:plum_job_change", args=[job.pk])
    assert response.status_code == 302
    assert response["Location"] == url("campaign_generate_codes", campaign_a.pk)
    assert message_texts(response) == [
        f'Generating 5 test code(s) for “Alpha Diwali”: <a href="{job_url}">job {job.pk}</a>.'
    ]
    assert (job.kind, job.total, job.params, job.created_by_user_id) == (
        "campaign.generate_codes",
        5,
        {"campaign_id": campaign_a.pk, "count": 5, "is_test": True},
        manager.pk,
    )
    # when the worker has run it
    job_run(job_id=job.pk)
    page = manager_client.get(url("campaign_generate_codes", campaign_a.pk))
    # then
    content = page.content.decode()
    assert f'<a href="{job_url}">{job.pk}</a>' in content
    assert '<progress max="100" value="100" aria-label="progress">100%</progress> 5 / 5' in content
    assert (
        Voucher.objects.filter(campaign=campaign_a, status="available", is_test=True).count() == 5
    )
    assert audit_actions(actor_user_id=manager.pk) == ["job.create", "voucher.generate"]


@pytest.mark.parametrize("count", ["0", "1000001", "many"])
def test_a_bad_count_is_a_form_error_and_queues_nothing(manager_client, campaign_a, count):
    # when
    response = manager_client.post(url("campaign_generate_codes", campaign_a.pk), {"count": count})
    # then
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["count"]
    assert Job.objects.count() == 0


def test_import_codes_reports_each_refused_row(manager_client, manager, campaign_a):
    # given
    taken = issue(campaign_a).code
    csv = f"code,value\nMERCH-0001,500\nmerch 0002,\nMERCH-0001,500\n{taken},500\nMERCH-0003,750\n"
    upload = SimpleUploadedFile("codes.csv", csv.encode(), content_type="text/csv")
    # when
    response = manager_client.post(url("campaign_import_codes", campaign_a.pk), {"file": upload})
    # then
    assert response.status_code == 200
    assert response.context["result"] == {
        "imported": 2,
        "errors": [
            {"row": 4, "column": "code", "message": "Duplicate of row 2."},
            {"row": 5, "column": "code", "message": "Already in Plum."},
            {"row": 6, "column": "value", "message": "Not a value this reward is sold at."},
        ],
    }
    content = response.content.decode()
    assert "<tr><td>4</td><td>code</td><td>Duplicate of row 2.</td></tr>" in content
    assert sorted(
        Voucher.objects.filter(campaign=campaign_a, status="available").values_list(
            "code", flat=True
        )
    ) == ["MERCH0001", "MERCH0002"]
    event = AuditEvent.objects.get(action="voucher.import")
    assert (event.actor_user_id, event.changes) == (
        manager.pk,
        {"imported": [None, 2], "is_test": [None, False]},
    )


def test_import_with_a_bad_header_is_a_form_error_and_imports_nothing(manager_client, campaign_a):
    # given
    upload = SimpleUploadedFile("codes.csv", b"voucher\nABC\n", content_type="text/csv")
    # when
    response = manager_client.post(url("campaign_import_codes", campaign_a.pk), {"file": upload})
    # then
    assert response.status_code == 200
    assert response.context["result"] is None
    assert response.context["form"].errors == {
        "__all__": ["header: voucher"],
    }
    assert Voucher.objects.filter(campaign=campaign_a).count() == 0
    assert audit_actions(action="voucher.import") == []


# voucher list ---------------------------------------------------------------------------------


def test_the_voucher_list_masks_codes_and_marks_test_vouchers(manager_client, campaign_a):
    # given
    live = issue(campaign_a)
    fill_pool(campaign_a, 1, is_test=True)
    test = Voucher.objects.get(is_test=True)
    # when
    response = manager_client.get(url("voucher_changelist"))
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert live.code not in content
    assert test.code not in content
    assert f"…{live.code[-4:]}" in content
    assert f"…{test.code[-4:]}" in content
    assert content.count(">TEST</span>") == 1


@pytest.mark.parametrize(
    ("typed", "found"),
    [
        (lambda code: code, 1),
        (lambda code: f" {code[:5].lower()}-{code[5:]} ", 1),
        (lambda code: code[:-1], 0),
        (lambda code: code[-4:], 0),
    ],
    ids=["exact", "normalized", "prefix", "last-four"],
)
def test_voucher_search_matches_the_exact_code_only(manager_client, campaign_a, typed, found):
    # given
    voucher = issue(campaign_a)
    issue(campaign_a)
    # when
    response = manager_client.get(url("voucher_changelist"), {"q": typed(voucher.code)})
    # then
    assert [v.pk for v in listed(response)] == [voucher.pk] * found


def test_voucher_search_does_not_reach_another_programme(manager_client, voucher_b):
    # when
    response = manager_client.get(url("voucher_changelist"), {"q": voucher_b.code})
    # then
    assert listed(response) == []


def test_voucher_changelist_query_count_does_not_grow_with_rows(manager_client, campaign_a):
    # given
    for _ in range(3):
        issue(campaign_a)
    manager_client.get(url("voucher_changelist"))  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as few:
        few_response = manager_client.get(url("voucher_changelist"))
    for _ in range(27):
        issue(campaign_a)
    # when
    with CaptureQueriesContext(connection) as many:
        many_response = manager_client.get(url("voucher_changelist"))
    # then
    assert (len(listed(few_response)), len(listed(many_response))) == (3, 30)
    assert len(many) == len(few)


def test_campaign_changelist_query_count_does_not_grow_with_rows(manager_client, programme, reward):
    # given
    for i in range(3):
        make_campaign(programme, reward, name=f"Campaign {i}")
    manager_client.get(url("campaign_changelist"))
    with CaptureQueriesContext(connection) as few:
        manager_client.get(url("campaign_changelist"))
    for i in range(3, 30):
        make_campaign(programme, reward, name=f"Campaign {i}")
    # when
    with CaptureQueriesContext(connection) as many:
        response = manager_client.get(url("campaign_changelist"))
    # then
    assert len(listed(response)) == 30
    assert len(many) == len(few)


def test_voucher_filters_by_campaign_test_flag_and_expiry_window(
    manager_client, programme, reward, campaign_a
):
    # given
    soon = issue(campaign_a)  # expires in 30 days
    never = issue(make_campaign(programme, reward, name="No expiry", expiry_days=None))
    fill_pool(campaign_a, 1, is_test=True)
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    within_90 = {"expires_at__gte": str(today), "expires_at__lt": str(today + timedelta(days=91))}
    # when
    by_campaign = manager_client.get(url("voucher_changelist"), {"campaign": campaign_a.pk})
    live_only = manager_client.get(url("voucher_changelist"), {"is_test__exact": "0"})
    expiring = manager_client.get(url("voucher_changelist"), within_90)
    no_expiry = manager_client.get(url("voucher_changelist"), {"expires_at__isnull": "True"})
    # then
    test_code = Voucher.objects.get(is_test=True)
    assert sorted(v.pk for v in listed(by_campaign)) == sorted([soon.pk, test_code.pk])
    assert sorted(v.pk for v in listed(live_only)) == sorted([soon.pk, never.pk])
    assert [v.pk for v in listed(expiring)] == [soon.pk]
    assert sorted(v.pk for v in listed(no_expiry)) == sorted([never.pk, test_code.pk])


def test_voucher_campaign_filter_names_only_visible_campaigns(manager_client, voucher_a, voucher_b):
    # when
    response = manager_client.get(url("voucher_changelist"))
    # then
    content = response.content.decode()
    assert f"?campaign={voucher_a.campaign_id}" in content
    assert f"?campaign={voucher_b.campaign_id}" not in content


# voucher change page and reveal -------------------------------------------------------------------


def test_voucher_page_is_read_only_and_never_shows_the_full_code(manager_client, voucher_a):
    # given
    voucher_redeem(voucher=voucher_a, amount=D("100.00"), reference="POS-77", actor=SYSTEM)
    # when
    response = manager_client.get(url("voucher_change", voucher_a.pk))
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert voucher_a.code not in content
    assert voucher_a.masked_code in content
    assert "POS-77" in content  # the redemptions inline
    assert url("voucher_reveal", voucher_a.pk) in content


def test_posting_to_the_voucher_page_changes_nothing(manager_client, voucher_a):
    # given
    before = voucher_state(voucher_a)
    # when
    response = manager_client.post(
        url("voucher_change", voucher_a.pk), {"balance": "0", "status": "redeemed"}
    )
    # then
    assert response.status_code == 403
    assert voucher_state(voucher_a) == before


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.SUPPORT_AGENT])
def test_reveal_shows_the_full_code_once_and_audits_it(
    client, make_user, programme, voucher_a, role
):
    # given
    user = make_user(role, programme)
    client.force_login(user)
    # when
    confirm = client.get(url("voucher_reveal", voucher_a.pk))
    revealed = client.post(url("voucher_reveal", voucher_a.pk))
    # then
    assert confirm.status_code == 200
    assert voucher_a.code not in confirm.content.decode()
    assert revealed.status_code == 200
    assert '<code id="revealed-code"' in revealed.content.decode()
    assert voucher_a.code in revealed.content.decode()
    assert "no-store" in revealed["Cache-Control"]
    event = AuditEvent.objects.get(action="voucher.reveal")
    assert (event.object_type, event.object_id, event.actor_user_id, event.programme_id) == (
        "campaigns.voucher",
        str(voucher_a.pk),
        user.pk,
        programme.pk,
    )


def test_finance_may_not_reveal_a_code(client, make_user, programme, voucher_a):
    # given
    client.force_login(make_user(roles.FINANCE, programme))
    # when
    page = client.get(url("voucher_change", voucher_a.pk))
    response = client.post(url("voucher_reveal", voucher_a.pk))
    # then
    assert page.status_code == 200
    assert url("voucher_reveal", voucher_a.pk) not in page.content.decode()
    assert response.status_code == 403
    assert voucher_a.code not in response.content.decode()
    assert audit_actions(action="voucher.reveal") == []


# voucher actions ----------------------------------------------------------------------------------


def test_flag_and_unflag_go_through_the_service_and_are_audited(manager_client, manager, voucher_a):
    # when
    flagged = post_action(manager_client, "voucher", "flag", [voucher_a])
    status_after_flag = Voucher.objects.get(pk=voucher_a.pk).status
    unflagged = post_action(manager_client, "voucher", "unflag", [voucher_a])
    # then
    assert status_after_flag == "flagged"
    assert Voucher.objects.get(pk=voucher_a.pk).status == "active"
    assert message_texts(flagged) == [f"Flagged 1 voucher(s): {voucher_a.masked_code}."]
    assert message_texts(unflagged) == [f"Unflagged 1 voucher(s): {voucher_a.masked_code}."]
    assert audit_actions(actor_user_id=manager.pk, object_id=str(voucher_a.pk)) == [
        "voucher.flag",
        "voucher.unflag",
    ]


def test_flagging_a_redeemed_voucher_is_refused_and_changes_nothing(manager_client, voucher_a):
    # given
    voucher_redeem(voucher=voucher_a, amount=D("500.00"), reference="ALL", actor=SYSTEM)
    before = voucher_state(voucher_a)
    # when
    response = post_action(manager_client, "voucher", "flag", [voucher_a])
    # then
    [refused] = message_texts(response)
    assert refused.startswith(
        f"Could not flag 1 voucher(s): {voucher_a.masked_code} (A voucher cannot go from "
    )
    assert voucher_state(voucher_a) == before
    assert audit_actions(action="voucher.flag") == []


def test_unflagging_a_voucher_that_is_not_flagged_is_refused(manager_client, voucher_a):
    # given
    before = voucher_state(voucher_a)
    # when
    response = post_action(manager_client, "voucher", "unflag", [voucher_a])
    # then
    [refused] = message_texts(response)
    assert refused.startswith(f"Could not unflag 1 voucher(s): {voucher_a.masked_code} (")
    assert voucher_state(voucher_a) == before
    assert audit_actions(action="voucher.unflag") == []


def test_extend_expiry_asks_for_the_new_date_first(manager_client, voucher_a):
    # given
    before = voucher_state(voucher_a)
    # when
    response = post_action(manager_client, "voucher", "extend_expiry", [voucher_a])
    # then
    content = response.content.decode()
    assert response.status_code == 200
    assert 'name="expires_on"' in content
    assert f'name="{ACTION_CHECKBOX}" value="{voucher_a.pk}"' in content
    assert "Asia/Kolkata" in content
    assert voucher_a.code not in content
    assert voucher_state(voucher_a) == before


def test_extend_expiry_moves_the_selected_vouchers_to_the_end_of_the_day(
    manager_client, manager, campaign_a
):
    # given
    extendable = issue(campaign_a)
    redeemed = issue(campaign_a)
    voucher_redeem(voucher=redeemed, amount=D("500.00"), reference="ALL", actor=SYSTEM)
    redeemed_before = voucher_state(redeemed)
    day = timezone.localdate() + timedelta(days=100)
    # when
    response = manager_client.post(
        url("voucher_changelist"),
        {
            "action": "extend_expiry",
            ACTION_CHECKBOX: [extendable.pk, redeemed.pk],
            "expires_on": day.isoformat(),
            "apply": "Extend expiry",
        },
    )
    # then
    expected = datetime.combine(day, time(23, 59, 59), ZoneInfo("Asia/Kolkata"))
    assert response.status_code == 302
    assert Voucher.objects.get(pk=extendable.pk).expires_at == expected
    assert voucher_state(redeemed) == redeemed_before
    assert message_texts(response) == [
        f"Extended 1 voucher(s) to {expected:%Y-%m-%d %H:%M} (Asia/Kolkata).",
        f"Could not extend 1 voucher(s): {redeemed.masked_code} (redeemed).",
    ]
    event = AuditEvent.objects.get(action="voucher.extend")
    assert (event.actor_user_id, event.object_id, event.changes["voucher_ids"]) == (
        manager.pk,
        str(extendable.pk),
        [None, [extendable.pk]],
    )


@pytest.mark.parametrize("expires_on", ["yesterday", "not-a-date", ""])
def test_extend_expiry_to_a_past_or_missing_date_is_refused(manager_client, voucher_a, expires_on):
    # given
    before = voucher_state(voucher_a)
    if expires_on == "yesterday":
        expires_on = (timezone.localdate() - timedelta(days=1)).isoformat()
    # when
    response = manager_client.post(
        url("voucher_changelist"),
        {
            "action": "extend_expiry",
            ACTION_CHECKBOX: [voucher_a.pk],
            "expires_on": expires_on,
            "apply": "Extend expiry",
        },
    )
    # then
    assert response.status_code == 302
    assert len(message_texts(response)) == 1
    assert message_texts(response)[0].startswith("Nothing was extended: ")
    assert voucher_state(voucher_a) == before
    assert audit_actions(action="voucher.extend") == []


def test_extend_expiry_to_the_past_says_so(manager_client, voucher_a):
    # given
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    # when
    response = manager_client.post(
        url("voucher_changelist"),
        {
            "action": "extend_expiry",
            ACTION_CHECKBOX: [voucher_a.pk],
            "expires_on": yesterday,
            "apply": "Extend expiry",
        },
    )
    # then
    assert message_texts(response) == ["Nothing was extended: The new expiry date is in the past."]


@pytest.mark.parametrize(
    ("action", "status", "member_kept", "message"),
    [
        ("recover_to_pool", "available", False, "Recovered 1 voucher(s) back to the pool."),
        ("recover_and_retire", "recovered", True, "Recovered 1 voucher(s) and retired them."),
    ],
)
def test_recover_gives_the_counts_back_and_is_audited(
    manager_client, manager, campaign_a, voucher_a, action, status, member_kept, message
):
    # given
    assert Campaign.objects.get(pk=campaign_a.pk).issued_count == 1
    # when
    response = post_action(manager_client, "voucher", action, [voucher_a])
    # then
    after = Voucher.objects.get(pk=voucher_a.pk)
    campaign = Campaign.objects.get(pk=campaign_a.pk)
    assert (after.status, after.member_id is not None) == (status, member_kept)
    assert (campaign.issued_count, campaign.issued_value) == (0, D("0"))
    assert message_texts(response) == [message]
    event = AuditEvent.objects.get(action="voucher.recover")
    assert (event.actor_user_id, event.object_id, event.changes["status"]) == (
        manager.pk,
        str(voucher_a.pk),
        [None, status],
    )


def test_recovering_a_partly_redeemed_voucher_is_refused_and_changes_nothing(
    manager_client, campaign_a, voucher_a
):
    # given
    voucher_redeem(voucher=voucher_a, amount=D("100.00"), reference="PART", actor=SYSTEM)
    before = (voucher_state(voucher_a), campaign_state(campaign_a))
    # when
    response = post_action(manager_client, "voucher", "recover_to_pool", [voucher_a])
    # then
    assert message_texts(response) == [
        f"Could not recover 1 voucher(s): {voucher_a.masked_code} (partially_redeemed)."
    ]
    assert (voucher_state(voucher_a), campaign_state(campaign_a)) == before
    assert audit_actions(action="voucher.recover") == []


def test_flagged_vouchers_can_be_recovered(manager_client, voucher_a):
    # given
    voucher_flag(voucher=voucher_a, actor=SYSTEM)
    # when
    post_action(manager_client, "voucher", "recover_and_retire", [voucher_a])
    # then
    assert Voucher.objects.get(pk=voucher_a.pk).status == "recovered"


# catalog ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client_(client, make_user):
    user = make_user(roles.PLATFORM_ADMIN)
    client.force_login(user)
    client.user = user
    return client


def reward_form(merchant, **overrides) -> dict:
    data = {
        "merchant": merchant.pk,
        "sku": "BREW-GC-IN",
        "name": "Brew coffee card",
        "description": "",
        "kind": "gift_card",
        "country": "in",
        "currency": "inr",
        "denominations": '["100", "250.5"]',
        "min_value": "",
        "max_value": "",
        "points_price": "10",
        "is_active": "on",
        "_save": "Save",
    }
    return {**data, **overrides}


def test_platform_admin_adds_a_reward_through_the_audited_service(admin_client_, merchant):
    # when
    response = admin_client_.post(url("reward_add"), reward_form(merchant))
    # then
    assert response.status_code == 302
    reward = Reward.objects.get(sku="BREW-GC-IN")
    assert (reward.country, reward.currency, reward.denominations, reward.points_price) == (
        "IN",
        "INR",
        ["100", "250.5"],
        10,
    )
    event = AuditEvent.objects.get(action="reward.create")
    assert (event.actor_user_id, event.object_id) == (admin_client_.user.pk, str(reward.pk))


def test_a_reward_with_one_bound_only_is_refused_on_its_field(admin_client_, merchant):
    # when
    response = admin_client_.post(
        url("reward_add"), reward_form(merchant, denominations="[]", min_value="10")
    )
    # then
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "max_value": ["Give both bounds of the range, or neither."]
    }
    assert Reward.objects.count() == 0


def test_platform_admin_changes_a_merchant_through_the_audited_service(admin_client_, merchant):
    # when
    response = admin_client_.post(
        url("merchant_change", merchant.pk),
        {
            "name": "Lotus Jewellers",
            "commission_percent": "7.50",
            "payout_period": "weekly",
            "is_active": "on",
            "_save": "Save",
        },
    )
    # then
    assert response.status_code == 302
    merchant.refresh_from_db()
    assert (merchant.commission_percent, merchant.payout_period) == (D("7.50"), "weekly")
    event = AuditEvent.objects.get(action="merchant.update")
    assert event.changes == {
        "commission_percent": ["0.00", "7.50"],
        "payout_period": ["monthly", "weekly"],
    }


@pytest.mark.parametrize("role", [roles.PROGRAMME_MANAGER, roles.FINANCE])
def test_managers_and_finance_view_the_catalog_only(client, make_user, programme, reward, role):
    # given
    client.force_login(make_user(role, programme))
    # when
    listing = client.get(url("reward_changelist"))
    add = client.get(url("reward_add"))
    change = client.post(url("reward_change", reward.pk), {"name": "Renamed", "_save": "Save"})
    # then
    assert (listing.status_code, add.status_code, change.status_code) == (200, 403, 403)
    assert Reward.objects.get(pk=reward.pk).name == "Lotus gift card"


def test_support_agents_do_not_see_the_catalog(client, make_user, programme, reward):
    # given
    client.force_login(make_user(roles.SUPPORT_AGENT, programme))
    # when
    response = client.get(url("reward_changelist"))
    # then
    assert response.status_code == 403


@pytest.fixture
def catalog(merchant):
    other = Merchant.objects.create(name="Sonora Audio")
    rows = [
        ("IN-GC", merchant, "gift_card", "IN", "INR"),
        ("IN-MER", other, "merchandise", "IN", "INR"),
        ("US-GC", merchant, "gift_card", "US", "USD"),
    ]
    return {
        sku: Reward.objects.create(
            merchant=m, sku=sku, name=f"{m.name} {sku}", kind=kind, country=country, currency=cur
        )
        for sku, m, kind, country, cur in rows
    }


@pytest.mark.parametrize(
    ("params", "skus"),
    [
        ({"country": "IN"}, ["IN-GC", "IN-MER"]),
        ({"kind__exact": "merchandise"}, ["IN-MER"]),
        ({"q": "sonora"}, ["IN-MER"]),
        ({"q": "US-GC"}, ["US-GC"]),
        ({"q": "lotus", "country": "US"}, ["US-GC"]),
    ],
)
def test_reward_list_filters_and_searches(client, make_user, programme, catalog, params, skus):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    # when
    response = client.get(url("reward_changelist"), params)
    # then
    assert sorted(r.sku for r in listed(response)) == skus


def test_reward_list_filters_by_merchant(client, make_user, programme, catalog):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    merchant = Merchant.objects.get(name="Sonora Audio")
    # when
    response = client.get(url("reward_changelist"), {"merchant__id__exact": merchant.pk})
    # then
    assert [r.sku for r in listed(response)] == ["IN-MER"]


def test_reward_changelist_query_count_does_not_grow_with_rows(
    client, make_user, programme, merchant
):
    # given
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))

    def add(first, last):
        for i in range(first, last):
            brand = Merchant.objects.create(name=f"Brand {i}")
            Reward.objects.create(
                merchant=brand,
                sku=f"SKU-{i}",
                name=f"R{i}",
                kind="gift_card",
                country="IN",
                currency="INR",
            )

    add(0, 3)
    client.get(url("reward_changelist"))
    with CaptureQueriesContext(connection) as few:
        client.get(url("reward_changelist"))
    add(3, 30)
    # when
    with CaptureQueriesContext(connection) as many:
        response = client.get(url("reward_changelist"))
    # then
    assert len(listed(response)) == 30
    assert len(many) == len(few)


def test_platform_admin_adds_a_merchant_through_the_audited_service(admin_client_):
    # when
    response = admin_client_.post(
        url("merchant_add"),
        {
            "name": "Sonora Audio",
            "commission_percent": "5",
            "payout_period": "monthly",
            "is_active": "on",
            "_save": "Save",
        },
    )
    # then
    assert response.status_code == 302
    merchant = Merchant.objects.get(name="Sonora Audio")
    assert merchant.commission_percent == D("5.00")
    event = AuditEvent.objects.get(action="merchant.create")
    assert (event.actor_user_id, event.object_id) == (admin_client_.user.pk, str(merchant.pk))


def test_platform_admin_changes_a_reward_but_not_its_sku(admin_client_, merchant, reward):
    # when
    response = admin_client_.post(
        url("reward_change", reward.pk),
        reward_form(
            merchant,
            sku="CHANGED",
            name="Lotus gift card (2026)",
            denominations='["500.00", "1000.00"]',
        ),
    )
    # then
    assert response.status_code == 302
    reward.refresh_from_db()
    assert (reward.sku, reward.name) == ("LOTUS-GC-IN", "Lotus gift card (2026)")
    event = AuditEvent.objects.get(action="reward.update")
    assert event.changes == {
        "name": ["Lotus gift card", "Lotus gift card (2026)"],
        "points_price": [None, 10],
    }
