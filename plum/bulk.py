"""Rows inserted without Django's per-value SQL compilation, for write paths whose cost is the
ORM's Python work rather than the database's: one multi-row VALUES list quoted by psycopg2 (as
its `execute_values` does) in the model's own columns, optionally `ON CONFLICT (...) DO
NOTHING`, so that a unique collision (a freshly drawn booking id or voucher code) needs no
savepoint to be retried. The statement goes through Django's cursor: counted and logged like
any other."""

from django.db import connection
from django.utils import timezone


def rows_insert(
    model, objs: list, *, returning_pk: bool, conflict: tuple[str, ...] | None = None
) -> list:
    """Insert `objs` (unsaved instances of `model`) in one statement; returns the ones inserted.

    `returning_pk` sets each inserted instance's primary key from `RETURNING`. With `conflict`
    (the columns of a unique constraint), rows that collide on it are skipped, not an error:
    they are left unsaved (pk None) and are not returned. auto_now / auto_now_add fields are
    set to one `now`. On another database than Postgres, `bulk_create` (without `conflict`)."""
    if not objs:
        return []
    if connection.vendor != "postgresql":
        if conflict is not None:
            raise NotImplementedError("rows_insert(conflict=...) needs Postgres")
        model.objects.bulk_create(objs, batch_size=1000)
        return objs
    from psycopg2.extras import Json

    meta = model._meta
    # An auto-increment key is left to the database; a key set in Python (a UUID) is sent.
    fields = [f for f in meta.concrete_fields if not (f.primary_key and objs[0].pk is None)]
    auto = {
        f.attname
        for f in fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    }
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    names = [f.attname for f in fields]
    now = timezone.now()
    rows = []
    for obj in objs:
        for name in auto:
            setattr(obj, name, now)
        rows.append(
            tuple(Json(getattr(obj, n)) if n in json_fields else getattr(obj, n) for n in names)
        )
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    head = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608 - own names
    tail = ""
    keys = [meta.get_field(name) for name in conflict or ()]
    if keys:
        tail += f" ON CONFLICT ({', '.join(quote(f.column) for f in keys)}) DO NOTHING"
    fetch = returning_pk or bool(keys)
    if fetch:
        # With collisions skipped, the returned rows say which were inserted: matched by the
        # conflict columns (unique, and distinct among `objs`).
        returned_columns = [meta.pk.column, *(f.column for f in keys)]
        tail += f" RETURNING {', '.join(quote(c) for c in returned_columns)}"
    with connection.cursor() as cursor:
        # The values are quoted by psycopg2 itself (what execute_values does), and the statement
        # goes through Django's cursor, so that it is counted and logged like any other.
        template = f"({', '.join(['%s'] * len(names))})"
        values = ",".join(cursor.cursor.mogrify(template, row).decode() for row in rows)
        cursor.execute(head + values + tail)
        returned = cursor.fetchall() if fetch else None
    if not fetch:
        return objs
    if keys:
        by_key = {tuple(row[1:]): row[0] for row in returned}
        pairs = [(obj, by_key.get(tuple(getattr(obj, f.attname) for f in keys))) for obj in objs]
        pairs = [(obj, pk) for obj, pk in pairs if pk is not None]
    else:
        pairs = list(zip(objs, (row[0] for row in returned), strict=True))
    for obj, pk in pairs:
        if returning_pk:
            obj.pk = pk
        obj._state.adding = False
    return [obj for obj, _ in pairs]
