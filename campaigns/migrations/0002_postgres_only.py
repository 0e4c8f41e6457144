"""Postgres-only parts of the schema:
- catalog text search stays fast at 100k+ rewards: trigram indexes;
- a voucher's (campaign, programme) must name an existing campaign of that programme. A
  foreign key would check it row by row (about 5 s per million codes generated, more than
  the whole COPY); statement-level triggers over the transition table check a whole COPY or
  INSERT with one join instead, and the campaign side refuses to delete or re-home a
  campaign that has vouchers."""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS reward_name_trgm ON campaigns_reward "
    "USING gin (upper(name) gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS merchant_name_trgm ON campaigns_merchant "
    "USING gin (upper(name) gin_trgm_ops)",
    """
    CREATE FUNCTION campaigns_voucher_campaign_exists() RETURNS trigger AS $$
    BEGIN
        IF EXISTS (
            SELECT 1 FROM new_rows n
            LEFT JOIN campaigns_campaign c
                ON c.id = n.campaign_id AND c.programme_id = n.programme_id
            WHERE c.id IS NULL
        ) THEN
            RAISE EXCEPTION 'voucher (campaign, programme) names no such campaign'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER voucher_campaign_on_insert AFTER INSERT ON campaigns_voucher "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION campaigns_voucher_campaign_exists()",
    "CREATE TRIGGER voucher_campaign_on_update AFTER UPDATE ON campaigns_voucher "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION campaigns_voucher_campaign_exists()",
    """
    CREATE FUNCTION campaigns_campaign_keeps_vouchers() RETURNS trigger AS $$
    BEGIN
        IF (TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.programme_id <> OLD.programme_id)
           AND EXISTS (SELECT 1 FROM campaigns_voucher v WHERE v.campaign_id = OLD.id) THEN
            RAISE EXCEPTION 'campaign % has vouchers', OLD.id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END;
    $$ LANGUAGE plpgsql
    """,
    "CREATE TRIGGER campaign_keeps_vouchers BEFORE DELETE OR UPDATE OF id, programme_id "
    "ON campaigns_campaign FOR EACH ROW EXECUTE FUNCTION campaigns_campaign_keeps_vouchers()",
]
BACKWARD = [
    "DROP TRIGGER IF EXISTS campaign_keeps_vouchers ON campaigns_campaign",
    "DROP FUNCTION IF EXISTS campaigns_campaign_keeps_vouchers()",
    "DROP TRIGGER IF EXISTS voucher_campaign_on_insert ON campaigns_voucher",
    "DROP TRIGGER IF EXISTS voucher_campaign_on_update ON campaigns_voucher",
    "DROP FUNCTION IF EXISTS campaigns_voucher_campaign_exists()",
    "DROP INDEX IF EXISTS reward_name_trgm",
    "DROP INDEX IF EXISTS merchant_name_trgm",
]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
