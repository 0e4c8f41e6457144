"""Indexes of the wallet reports. The others they use already exist: a member's postings by
(account, -id), a date range by (programme, -created_at), a transaction's postings by the
posting's transaction foreign key. This one serves a kind filter over a date range."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('plum', '0004_auditevent_member'),
        ('wallets', '0003_points_policy'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='ledgertransaction',
            index=models.Index(fields=['programme', 'kind', '-created_at'], name='ledger_txn_kind_idx'),
        ),
    ]
