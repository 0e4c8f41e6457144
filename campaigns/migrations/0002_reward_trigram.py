"""Catalog text search stays fast at 100k+ rewards: trigram indexes on Postgres."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS reward_name_trgm ON campaigns_reward "
        "USING gin (upper(name) gin_trgm_ops)"
    )
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS merchant_name_trgm ON campaigns_merchant "
        "USING gin (upper(name) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS reward_name_trgm")
    schema_editor.execute("DROP INDEX IF EXISTS merchant_name_trgm")


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
