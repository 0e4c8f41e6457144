"""Rows inserted without Django's per-value SQL compilation, for write paths whose cost is the
ORM's Python work rather than the database's: one multi-row VALUES list quoted by psycopg2 (as
its `execute_values` does) in the model's own columns, optionally `ON CONFLICT (...) DO
NOTHING`, so that a unique collision (a freshly drawn booking id or voucher code) needs no
savepoint to be retried. The statement goes through Django's cursor: counted and logged like
any other."""

from datetime import timedelta
from functools import cache

from django.db import connection
from django.db.models import NOT_PROVIDED
from django.utils import timezone


class Row:
    """One row of `model` for `rows_insert`, without a model instance (whose constructor is
    the larger part of building thousands of rows): every concrete field's attname is an
    attribute, `pk` names the primary key. Build it with `row_for`."""

    def __init__(self, pk_name: str, values: dict):
        self.__dict__.update(values)
        self._pk_name = pk_name

    @property
    def pk(self):
        return getattr(self, self._pk_name)

    @pk.setter
    def pk(self, value):
        setattr(self, self._pk_name, value)


@cache
def _defaults(model) -> tuple[str, dict, dict]:
    static, dynamic = {}, {}
    for f in model._meta.concrete_fields:
        if f.default is not NOT_PROVIDED and callable(f.default):
            dynamic[f.attname] = f.get_default
        else:
            static[f.attname] = f.get_default()
    return model._meta.pk.attname, static, dynamic


def row_for(model, **values) -> Row:
    """A `Row` of `model`: `values` by attname (unknown names refused), every other field at
    its default (a callable default called), as the model's constructor would set them."""
    pk_name, static, dynamic = _defaults(model)
    unknown = set(values) - set(static) - set(dynamic)
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {sorted(unknown)}")
    row = {**static, **{n: d() for n, d in dynamic.items() if n not in values}, **values}
    return Row(pk_name, row)


def rows_insert(
    model, objs: list, *, returning_pk: bool, conflict: tuple[str, ...] | None = None
) -> list:
    """Insert `objs` (unsaved instances of `model`, or `Row`s of it) in one statement; returns
    the ones inserted.

    `returning_pk` sets each inserted instance's primary key from `RETURNING`. With `conflict`
    (the columns of a unique constraint), rows that collide on it are skipped, not an error:
    they are left unsaved (pk None) and are not returned. auto_now / auto_now_add fields are
    set to `now` plus the row's index in microseconds (so they order the rows as given). On
    another database than Postgres, `bulk_create` (without `conflict`)."""
    if not objs:
        return []
    if connection.vendor != "postgresql":
        if conflict is not None:
            raise NotImplementedError("rows_insert(conflict=...) needs Postgres")
        instances = [
            model(**{k: v for k, v in o.__dict__.items() if k != "_pk_name"})
            if isinstance(o, Row)
            else o
            for o in objs
        ]
        model.objects.bulk_create(instances, batch_size=1000)
        for obj, instance in zip(objs, instances, strict=True):
            obj.pk = instance.pk
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
    for index, obj in enumerate(objs):
        # One microsecond apart, in list order: ordering by created_at keeps the order the
        # caller wrote them in (the events of one change: created, then completed).
        stamp = now + timedelta(microseconds=index)
        for name in auto:
            setattr(obj, name, stamp)
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
        if isinstance(obj, Row):
            continue
        obj._state.adding = False
    return [obj for obj, _ in pairs]
