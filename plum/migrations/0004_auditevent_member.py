"""AuditEvent.member_id: the member an action was taken against, for the member audit log.

Nullable and added without a default, so Postgres only changes the catalog (no table rewrite,
and the append-only trigger never fires). Existing rows are not backfilled: that would be an
UPDATE of an append-only table and would change sealed content. Events written before this
migration are still found by their object (object_type "plum.member", object_id) through
audit_object_idx."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("plum", "0003_job_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="member_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                condition=models.Q(("member_id__isnull", False)),
                fields=["member_id", "-id"],
                name="audit_member_idx",
            ),
        ),
    ]
