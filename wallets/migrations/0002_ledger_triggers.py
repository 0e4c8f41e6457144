"""Postgres-only guards of the ledger:
- postings and transactions are append-only: UPDATE, DELETE and TRUNCATE are rejected by the
  kernel's plum_reject_change() (plum 0002), with its plum.allow_truncate escape for test
  teardown;
- a deferred constraint trigger checks, at commit, every transaction that got a row or a
  posting: two or more postings, summing to zero, all on accounts of the transaction's
  programme. Deferred, so that a service may insert the transaction and its postings in any
  order; an unbalanced transaction cannot commit, not even through raw SQL."""

from django.db import migrations

APPEND_ONLY_TABLES = ["wallets_posting", "wallets_ledgertransaction"]

CHECK_FUNCTION = """
CREATE OR REPLACE FUNCTION wallets_check_transaction_balanced() RETURNS trigger AS $$
DECLARE
    txn_id bigint;
    txn_programme bigint;
    posting_count integer;
    posting_sum numeric;
    foreign_count integer;
BEGIN
    IF TG_TABLE_NAME = 'wallets_posting' THEN
        txn_id := NEW.transaction_id;
    ELSE
        txn_id := NEW.id;
    END IF;
    SELECT programme_id INTO txn_programme FROM wallets_ledgertransaction WHERE id = txn_id;
    SELECT count(*), coalesce(sum(p.amount), 0),
           count(*) FILTER (WHERE a.programme_id <> txn_programme)
      INTO posting_count, posting_sum, foreign_count
      FROM wallets_posting p JOIN wallets_account a ON a.id = p.account_id
     WHERE p.transaction_id = txn_id;
    IF posting_count < 2 THEN
        RAISE EXCEPTION 'ledger transaction % has % posting(s); it needs two or more',
            txn_id, posting_count USING ERRCODE = 'check_violation';
    END IF;
    IF posting_sum <> 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its postings sum to %',
            txn_id, posting_sum USING ERRCODE = 'check_violation';
    END IF;
    IF foreign_count > 0 THEN
        RAISE EXCEPTION 'ledger transaction % posts to another programme''s account', txn_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

FORWARD = [
    CHECK_FUNCTION,
    "CREATE CONSTRAINT TRIGGER wallets_transaction_balanced AFTER INSERT "
    "ON wallets_ledgertransaction DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
    "EXECUTE FUNCTION wallets_check_transaction_balanced()",
    "CREATE CONSTRAINT TRIGGER wallets_posting_balanced AFTER INSERT "
    "ON wallets_posting DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
    "EXECUTE FUNCTION wallets_check_transaction_balanced()",
]
for _table in APPEND_ONLY_TABLES:
    FORWARD += [
        f"CREATE TRIGGER {_table}_append_only BEFORE UPDATE OR DELETE ON {_table} "
        "FOR EACH ROW EXECUTE FUNCTION plum_reject_change()",
        f"CREATE TRIGGER {_table}_no_truncate BEFORE TRUNCATE ON {_table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION plum_reject_change()",
    ]

BACKWARD = [
    *[
        statement
        for table in APPEND_ONLY_TABLES
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        )
    ],
    "DROP TRIGGER IF EXISTS wallets_posting_balanced ON wallets_posting",
    "DROP TRIGGER IF EXISTS wallets_transaction_balanced ON wallets_ledgertransaction",
    "DROP FUNCTION IF EXISTS wallets_check_transaction_balanced()",
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
    dependencies = [
        ("wallets", "0001_initial"),
        ("plum", "0002_append_only_and_roles"),
    ]
    operations = [migrations.RunPython(forwards, backwards)]
