"""Workflow rules: the condition matrix (every operator, missing fields, type mismatches),
validation on save, and the rules admin."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from orders.models import RuleCondition, WorkflowRule
from orders.services import condition_check, rule_save
from plum import roles
from plum.actors import SYSTEM
from plum.errors import InvalidInputError
from plum.models import AuditEvent

DATA = {
    "spend": 500,
    "fuel_litres": 40.5,
    "visits": 3,
    "tier": "gold",
    "store": {"region": "north", "city": "Pune"},
    "tags": ["vip", "early"],
    "codes": [7, 11],
    "first_visit": True,
    "note": None,
    "spend_text": "500",
}


def cond(field, operator, value, value_type="number"):
    return {"field": field, "operator": operator, "value_type": value_type, "value": value}


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        # numbers, compared as Decimals (40.5 is exactly 40.50)
        (cond("spend", "==", "500"), True),
        (cond("spend", "==", "500.00"), True),
        (cond("spend", "==", "499.99"), False),
        (cond("spend", "!=", "499"), True),
        (cond("spend", "!=", "500"), False),
        (cond("spend", ">", "499.99"), True),
        (cond("spend", ">", "500"), False),
        (cond("spend", ">=", "500"), True),
        (cond("spend", ">=", "500.01"), False),
        (cond("spend", "<", "500.01"), True),
        (cond("spend", "<", "500"), False),
        (cond("spend", "<=", "500"), True),
        (cond("spend", "<=", "499"), False),
        (cond("fuel_litres", ">", "40"), True),
        (cond("fuel_litres", "==", "40.50"), True),
        (cond("visits", "in", "1, 3, 5"), True),
        (cond("visits", "in", "2,4"), False),
        (cond("codes", "contains", "11"), True),
        (cond("codes", "contains", "12"), False),
        # strings, compared as strings
        (cond("tier", "==", "gold", "string"), True),
        (cond("tier", "==", "Gold", "string"), False),
        (cond("tier", "!=", "silver", "string"), True),
        (cond("tier", "in", "gold,platinum", "string"), True),
        (cond("tier", "in", "silver, bronze", "string"), False),
        (cond("tier", "contains", "ol", "string"), True),
        (cond("tier", "contains", "x", "string"), False),
        (cond("tier", ">", "f", "string"), True),
        (cond("tier", "<=", "gold", "string"), True),
        (cond("tags", "contains", "vip", "string"), True),
        (cond("tags", "contains", "late", "string"), False),
        (cond("store.region", "==", "north", "string"), True),
        (cond("store.city", "!=", "Pune", "string"), False),
        # booleans
        (cond("first_visit", "==", "true", "boolean"), True),
        (cond("first_visit", "!=", "true", "boolean"), False),
        (cond("first_visit", "==", "False", "boolean"), False),
    ],
)
def test_condition_operators(condition, holds):
    # when
    check = condition_check(condition, DATA)
    # then
    assert check.holds is holds
    assert check.reason_code == ("" if holds else "condition_false")


@pytest.mark.parametrize(
    ("condition", "reason_code", "detail"),
    [
        (cond("basket", ">", "1"), "missing_field", "basket is missing from the event's data."),
        (
            cond("store.country", "==", "IN", "string"),
            "missing_field",
            "store.country is missing from the event's data.",
        ),
        (
            cond("tier.level", "==", "1"),
            "missing_field",
            "tier.level is missing from the event's data.",
        ),
        (
            cond("spend_text", ">=", "500"),
            "type_mismatch",
            'spend_text is text ("500"); the condition compares numbers.',
        ),
        (
            cond("spend", "==", "500", "string"),
            "type_mismatch",
            "spend is a number (500); the condition compares strings.",
        ),
        (
            cond("first_visit", "==", "1"),
            "type_mismatch",
            "first_visit is a boolean (true); the condition compares numbers.",
        ),
        (
            cond("note", "==", "x", "string"),
            "type_mismatch",
            "note is null (null); the condition compares strings.",
        ),
        (
            cond("store", "contains", "north", "string"),
            "type_mismatch",
            'store is an object ({"region": "north", "city": "Pune"}); '
            "the condition compares strings.",
        ),
        (
            cond("spend", "contains", "5"),
            "type_mismatch",
            "spend is a number (500); the condition compares numbers.",
        ),
        (
            cond("spend", ">=", "600"),
            "condition_false",
            "spend is 500: not >= 600.",
        ),
    ],
)
def test_a_missing_field_or_type_mismatch_is_not_matched_with_the_reason(
    condition, reason_code, detail
):
    check = condition_check(condition, DATA)
    assert (check.holds, check.reason_code, check.detail) == (False, reason_code, detail)


# --- validation on save ------------------------------------------------------------------


@pytest.fixture
def reward_rule(programme, campaign):
    return lambda **fields: WorkflowRule(
        **{
            "programme": programme,
            "name": "Big spender",
            "event_type": "purchase",
            "action": "reward",
            "campaign": campaign,
            **fields,
        }
    )


@pytest.mark.django_db
def test_a_valid_rule_is_saved_with_its_conditions_and_audited(reward_rule):
    # when
    rule = rule_save(
        rule=reward_rule(),
        conditions=[cond("spend", ">=", "500"), cond("tier", "in", "gold,platinum", "string")],
        actor=SYSTEM,
    )
    # then
    assert [str(c) for c in rule.conditions.all()] == ["spend >= 500", "tier in gold,platinum"]
    event = AuditEvent.objects.get(action="rule.create", object_id=str(rule.pk))
    assert event.changes["event_type"] == [None, "purchase"]
    assert event.changes["conditions"][1] == [
        {"field": "spend", "operator": ">=", "value_type": "number", "value": "500"},
        {"field": "tier", "operator": "in", "value_type": "string", "value": "gold,platinum"},
    ]


@pytest.mark.django_db
def test_updating_a_rule_replaces_its_conditions(reward_rule):
    rule = rule_save(rule=reward_rule(), conditions=[cond("spend", ">=", "500")], actor=SYSTEM)
    rule.priority = 5
    rule_save(rule=rule, conditions=[cond("visits", "==", "3")], actor=SYSTEM)
    assert [str(c) for c in RuleCondition.objects.filter(rule=rule)] == ["visits == 3"]
    event = AuditEvent.objects.get(action="rule.update", object_id=str(rule.pk))
    assert event.changes["priority"] == [100, 5]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("conditions", "fields"),
    [
        (
            [cond("spend", ">=", "five hundred")],
            {"conditions.0.value": ["'five hundred' is not a number."]},
        ),
        ([cond("spend", ">=", "NaN")], {"conditions.0.value": ["'NaN' is not a finite number."]}),
        (
            [cond("first_visit", ">", "true", "boolean")],
            {"conditions.0.operator": ["The operator > cannot compare a boolean value."]},
        ),
        (
            [cond("flag", "==", "yes", "boolean")],
            {"conditions.0.value": ["A boolean value is true or false."]},
        ),
        (
            [cond("visits", "in", "1,,3")],
            {"conditions.0.value": ["List every value, separated by commas, none empty."]},
        ),
        (
            [cond("visits", "~", "1")],
            {"conditions.0.operator": ["Value '~' is not a valid choice."]},
        ),
        (
            [cond("spend", ">=", "1"), cond("bad field!", "==", "x", "string")],
            {
                "conditions.1.field": [
                    "A key of the event's data, or a dotted path into nested objects "
                    "(store.region)."
                ]
            },
        ),
    ],
)
def test_invalid_conditions_are_refused_with_the_field_named(reward_rule, conditions, fields):
    with pytest.raises(InvalidInputError) as refused:
        rule_save(rule=reward_rule(), conditions=conditions, actor=SYSTEM)
    assert refused.value.fields == fields
    assert WorkflowRule.objects.count() == 0


@pytest.mark.django_db
def test_a_campaign_of_another_programme_is_refused(reward_rule, other_programme, make_campaign):
    theirs = make_campaign(other_programme, name="Beta")
    with pytest.raises(InvalidInputError) as refused:
        rule_save(rule=reward_rule(campaign=theirs), conditions=[], actor=SYSTEM)
    assert refused.value.fields == {"campaign": ["The campaign belongs to another programme."]}
    assert WorkflowRule.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"campaign": None}, {"campaign": ["A reward rule needs the campaign it sends from."]}),
        ({"points": 10}, {"points": ["A reward rule awards no points; leave this empty."]}),
        (
            {"action": "points", "points": None},
            {
                "points": ["How many points this rule awards (at least 1)."],
                "campaign": ["A points rule sends no reward; leave this empty."],
            },
        ),
        (
            {"event_type": "Big Purchase"},
            {"event_type": ["Lower-case letters, digits, '.', '_' and '-', up to 64 characters."]},
        ),
    ],
)
def test_rule_fields_are_validated(reward_rule, fields, errors):
    with pytest.raises(InvalidInputError) as refused:
        rule_save(rule=reward_rule(**fields), conditions=[], actor=SYSTEM)
    assert refused.value.fields == errors


@pytest.mark.django_db
def test_the_database_refuses_a_reward_rule_without_a_campaign(programme):
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkflowRule.objects.create(
            programme=programme, name="x", event_type="purchase", action="reward"
        )


# --- admin -------------------------------------------------------------------------------

CHANGELIST = "/admin/orders/workflowrule/"


def rule_form(programme, campaign, **overrides):
    data = {
        "programme": programme.pk,
        "name": "Big spender",
        "event_type": "purchase",
        "is_active": "on",
        "priority": "10",
        "action": "reward",
        "campaign": campaign.pk,
        "points": "",
        "points_reason": "programme_rule",
        "description": "",
        "conditions-TOTAL_FORMS": "2",
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "1000",
        "conditions-0-field": "spend",
        "conditions-0-operator": ">=",
        "conditions-0-value_type": "number",
        "conditions-0-value": "500",
        "conditions-1-field": "tier",
        "conditions-1-operator": "==",
        "conditions-1-value_type": "string",
        "conditions-1-value": "gold",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
def test_a_manager_creates_a_rule_with_conditions_in_the_admin(
    client, make_user, programme, campaign
):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    response = client.post(f"{CHANGELIST}add/", rule_form(programme, campaign))
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = WorkflowRule.objects.get()
    assert (rule.name, rule.campaign_id, rule.priority) == ("Big spender", campaign.pk, 10)
    assert [str(c) for c in rule.conditions.all()] == ["spend >= 500", "tier == gold"]
    assert AuditEvent.objects.filter(action="rule.create", object_id=str(rule.pk)).count() == 1


@pytest.mark.django_db
def test_the_admin_shows_clear_errors_and_saves_nothing(client, make_user, programme, campaign):
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    response = client.post(
        f"{CHANGELIST}add/",
        rule_form(
            programme,
            campaign,
            **{"conditions-0-value": "lots", "conditions-1-operator": ">", "action": "points"},
        ),
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "&#x27;lots&#x27; is not a number." in page
    assert "A points rule sends no reward; leave this empty." in page
    assert WorkflowRule.objects.count() == 0


@pytest.mark.django_db
def test_the_admin_offers_only_the_managers_programmes_and_campaigns(
    client, make_user, programme, other_programme, campaign, make_campaign
):
    theirs = make_campaign(other_programme, name="Beta campaign")
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    page = client.get(f"{CHANGELIST}add/").content.decode()
    assert "Beta campaign" not in page
    assert "Diwali bonus" in page
    response = client.post(f"{CHANGELIST}add/", rule_form(other_programme, theirs))
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert WorkflowRule.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.SUPPORT_AGENT, roles.FINANCE])
def test_support_and_finance_cannot_edit_rules(client, make_user, programme, role):
    client.force_login(make_user(role, programme))
    assert client.get(CHANGELIST).status_code == 403


@pytest.mark.django_db
def test_rules_of_another_programme_are_not_found(
    client, make_user, programme, other_programme, make_campaign, reward_rule
):
    theirs = make_campaign(other_programme, name="Beta")
    rule = rule_save(
        rule=WorkflowRule(
            programme=other_programme,
            name="Theirs",
            event_type="purchase",
            action="reward",
            campaign=theirs,
        ),
        conditions=[],
        actor=SYSTEM,
    )
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    assert "Theirs" not in client.get(CHANGELIST).content.decode()
    assert client.get(f"{CHANGELIST}{rule.pk}/change/").status_code == 404


def test_decimal_comparison_is_exact():
    # 0.1 + 0.2 style float noise never leaks into a comparison: 40.1 is compared as "40.1"
    assert condition_check(cond("x", "==", "40.1"), {"x": 40.1}).holds
    assert Decimal(repr(40.1)) == Decimal("40.1")


@pytest.mark.django_db
def test_a_manager_edits_a_rule_and_its_conditions_in_the_admin(
    client, make_user, programme, campaign, reward_rule
):
    # given
    rule = rule_save(rule=reward_rule(), conditions=[cond("spend", ">=", "500")], actor=SYSTEM)
    existing = rule.conditions.get()
    client.force_login(make_user(roles.PROGRAMME_MANAGER, programme))
    form = rule_form(
        programme,
        campaign,
        **{
            "priority": "3",
            "stop_after": "on",
            "conditions-INITIAL_FORMS": "1",
            "conditions-0-id": existing.pk,
            "conditions-0-rule": rule.pk,
            "conditions-0-DELETE": "on",
        },
    )
    # when
    response = client.post(f"{CHANGELIST}{rule.pk}/change/", form)
    # then: the deleted condition is gone, the new one is there
    assert response.status_code == 302, response.content.decode()[:3000]
    rule.refresh_from_db()
    assert (rule.priority, rule.stop_after) == (3, True)
    assert [str(c) for c in rule.conditions.all()] == ["tier == gold"]
    event = AuditEvent.objects.get(action="rule.update", object_id=str(rule.pk))
    assert event.changes["priority"] == [100, 3]
