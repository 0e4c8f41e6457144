"""Hand-written SQL for the hottest reads and writes, with the ORM's models and columns.

Compiling an ORM query costs about half a millisecond of CPU; the issuance path ran a dozen of
them per request. The statements here are built once, at import time, from the models' own
metadata (table and column names), and run through Django's cursor, so they are counted and
logged like any other; rows come back as model instances through `Model.from_db`, as the ORM
would build them."""

from contextlib import contextmanager
from datetime import timedelta
from functools import cache

from django.db import connection
from django.db.models.base import ModelState
from django.utils import timezone


def select_list(model, alias: str | None = None) -> str:
    """The quoted columns of every concrete field of `model`, in field order (what `from_db`
    expects), each qualified by `alias` (or the table)."""
    quote = connection.ops.quote_name
    prefix = quote(alias or model._meta.db_table)
    return ", ".join(f"{prefix}.{quote(f.column)}" for f in model._meta.concrete_fields)


def attnames(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model, name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


@cache
def _converters(model) -> list[tuple[int, list, object]]:
    """The ORM's conversions of a column's database value (a JSON field's text parsed, ...):
    (position, converters, column) for the fields that have any."""
    plan = []
    for index, field in enumerate(model._meta.concrete_fields):
        col = field.cached_col
        converters = connection.ops.get_db_converters(col) + field.get_db_converters(connection)
        if converters:
            plan.append((index, converters, col))
    return plan


def from_row(model, names: list[str], values) -> object:
    """A model instance of a row read by hand (every concrete field, in field order), as the
    ORM builds one (`Model.from_db`): each value through the field's converters, the instance
    marked as loaded from the database. Without the constructor's per-field work, for models
    with no init signal receivers."""
    plan = _converters(model)
    if plan:
        values = list(values)
        for index, converters, col in plan:
            value = values[index]
            for converter in converters:
                value = converter(value, col, connection)
            values[index] = value
    obj = model.__new__(model)
    obj.__dict__.update(zip(names, values, strict=True))
    state = obj._state = ModelState()
    state.adding = False
    state.db = "default"
    return obj


@cache
def _defaults(model) -> tuple[dict, dict]:
    static, dynamic = {}, {}
    for f in model._meta.concrete_fields:
        if f.has_default() and callable(f.default):
            dynamic[f.attname] = f.get_default
        else:
            static[f.attname] = f.get_default()
    return static, dynamic


def new(model, **values):
    """A new (unsaved) instance of `model` from values by attname, every other field at its
    default (a callable default called), as `model(**values)` builds it, without the
    constructor's per-field argument handling (for models with no init signal receivers,
    built several times per request: audit events, outbox messages)."""
    static, dynamic = _defaults(model)
    obj = model.__new__(model)
    d = obj.__dict__
    d.update(static)
    for name, default in dynamic.items():
        if name not in values:
            d[name] = default()
    d.update(values)
    obj._state = ModelState()
    return obj


@cache
def _insert_plan(model, with_pk: bool, conflict: tuple[str, ...], returning: bool):
    meta = model._meta
    quote = connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if with_pk or not f.primary_key]
    auto = [
        f.attname
        for f in fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    json_fields = {f.attname for f in fields if f.get_internal_type() == "JSONField"}
    names = [f.attname for f in fields]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "  # noqa: S608 - the model's own names
        f"({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if conflict:
        columns = ", ".join(quote(meta.get_field(name).column) for name in conflict)
        sql += f" ON CONFLICT ({columns}) DO NOTHING"
    if returning or conflict:
        sql += f" RETURNING {quote(meta.pk.column)}"
    return sql, names, auto, json_fields


def row_insert(obj, *, conflict: tuple[str, ...] = (), now=None) -> bool:
    """Insert one model instance with a statement built once per model (what
    `plum.bulk.rows_insert` does for one row, without quoting the values in Python first).
    An auto-increment key is left to the database and set from RETURNING; a key set in Python
    (a UUID) is sent. With `conflict` (a unique constraint's fields), a collision inserts
    nothing and returns False, leaving the instance unsaved. auto_now / auto_now_add fields are
    set to `now` (the current time by default)."""
    if connection.vendor != "postgresql":
        if conflict:
            raise NotImplementedError("row_insert(conflict=...) needs Postgres")
        obj.save(force_insert=True)
        return True
    from psycopg2.extras import Json

    model = type(obj)
    with_pk = obj.pk is not None
    sql, names, auto, json_fields = _insert_plan(model, with_pk, conflict, not with_pk)
    if auto:
        stamp = now or timezone.now()
        for name in auto:
            setattr(obj, name, stamp)
    d = obj.__dict__
    params = [Json(d[n]) if n in json_fields else d[n] for n in names]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = True if with_pk and not conflict else cursor.fetchone()
    if row is None:
        return False
    if not with_pk:
        obj.pk = row[0]
    obj._state.adding = False
    return True


def rows_insert_plain(objs: list, *, now=None) -> None:
    """Insert model instances of one model in one multi-row INSERT built from a per-model
    plan (`plum.bulk.rows_insert` without quoting the values in Python first). Keys set in
    Python (UUIDs) are sent; otherwise the database draws them and each instance gets its own
    from RETURNING, in the order given. auto_now / auto_now_add fields are set to `now` plus
    the row's index in microseconds, as rows_insert does."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        type(objs[0]).objects.bulk_create(objs)
        return
    from psycopg2.extras import Json

    with_pk = objs[0].pk is not None
    sql, names, auto, json_fields = _insert_plan(type(objs[0]), with_pk, (), not with_pk)
    head, _, rest = sql.partition(" VALUES ")
    template, _, returning = rest.partition(" RETURNING ")
    stamp = now or timezone.now()
    params = []
    for index, obj in enumerate(objs):
        if auto:
            at = stamp + timedelta(microseconds=index)
            for name in auto:
                setattr(obj, name, at)
        d = obj.__dict__
        params.extend(Json(d[n]) if n in json_fields else d[n] for n in names)
    sql = f"{head} VALUES {', '.join([template] * len(objs))}"

    def inserted(pks: list | None) -> None:
        for obj, pk in zip(objs, pks or [obj.pk for obj in objs], strict=True):
            obj.pk = pk
            obj._state.adding = False

    if with_pk:
        execute(sql, params, then=inserted)
    else:
        execute(sql, params, returning=returning, then=inserted)


# --- deferred writes ----------------------------------------------------------------------


class _Deferred:
    def __init__(self, savepoints: list):
        self.savepoints = savepoints
        self.parts: list[tuple[str, list, str | None, object]] = []


def _savepoints(conn) -> list:
    # An atomic block without a savepoint stands in the list as None.
    return [sid for sid in conn.savepoint_ids if sid is not None]


def execute(sql: str, params: list, *, returning: str | None = None, then=None) -> int | None:
    """Run a write whose outcome nobody reads before the end of the enclosing
    `deferred_writes` block, if there is one (then it joins that block's one statement, and
    None is returned), else at once (the number of rows it wrote is returned). `returning`
    names one column to return; `then(values)` gets its values (None without `returning`)
    once the statement has run."""
    batch = getattr(connection, "_plum_deferred", None)
    if batch is not None and batch.savepoints == _savepoints(connection):
        batch.parts.append((sql, params, returning, then))
        return None
    return _run([(sql, params, returning, then)])


def _run(parts: list) -> int | None:
    if len(parts) == 1:
        sql, params, returning, then = parts[0]
        with connection.cursor() as cursor:
            if returning:
                cursor.execute(f"{sql} RETURNING {returning}", params)
                values = [row[0] for row in cursor.fetchall()]
            else:
                cursor.execute(sql, params)
                values = None
            count = cursor.rowcount
        if then is not None:
            then(values)
        return count
    # Several writes in one statement, each a data-modifying WITH query: each runs exactly
    # once, to completion, whether or not anything reads its rows; the final SELECT returns
    # what the ones with `returning` return, tagged by their position.
    ctes, selects, all_params = [], [], []
    for index, (sql, params, returning, _) in enumerate(parts):
        if returning:
            sql = f"{sql} RETURNING {returning} AS v"
            selects.append(f"SELECT {index} AS part, v::text AS v FROM w{index}")  # noqa: S608
        ctes.append(f"w{index} AS ({sql})")
        all_params.extend(params)
    select = " UNION ALL ".join(selects) if selects else "SELECT NULL::int, NULL::text WHERE false"
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} {select}", all_params)
        rows = cursor.fetchall()
    returned: dict[int, list] = {}
    for part, value in rows:
        returned.setdefault(part, []).append(value)
    for index, (_, _, returning, then) in enumerate(parts):
        if then is not None:
            then([int(v) for v in returned.get(index, [])] if returning else None)
    return None


@contextmanager
def deferred_writes():
    """Inside the block, the writes that go through `execute` (the audit and outbox batches'
    INSERTs, the idempotency key's stored response) are collected and run as one statement
    when the block ends without an error. Use it inside the transaction that makes them, for a
    request whose last writes nobody reads before it commits (the single issuance); writes
    made inside a savepoint opened in the block run at once. Nested blocks join the outermost
    one."""
    conn = connection
    if getattr(conn, "_plum_deferred", None) is not None:
        yield
        return
    batch = conn._plum_deferred = _Deferred(_savepoints(conn))
    try:
        yield
    finally:
        conn._plum_deferred = None
    if batch.parts:
        _run(batch.parts)


def rows_insert_keyed(objs: list, *, now=None) -> None:
    """`rows_insert_plain` for instances whose primary keys are set in Python (UUIDs)."""
    if objs and objs[0].pk is None:
        raise ValueError("rows_insert_keyed needs keys set in Python")
    rows_insert_plain(objs, now=now)
