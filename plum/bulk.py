"""Rows inserted without Django's per-value SQL compilation, for write paths whose cost is the
ORM's Python work rather than the database's, in the model's own columns, optionally `ON
CONFLICT (...) DO NOTHING`, so that a unique collision (a freshly drawn booking id or voucher
code) needs no savepoint to be retried. The statement goes through Django's cursor: counted and
logged like any other.

- `rows_insert`: row objects (model instances or `Row`s). A few rows go as one VALUES list
  quoted by psycopg2 (as its `execute_values` does); more go through `columns_insert`.
- `columns_insert`: column-major values, one Python list per column, sent as one array per
  column: `INSERT ... SELECT ... FROM unnest(%s::bigint[], %s::text[], ...) WITH ORDINALITY`.
  Each array goes as one array literal ('{...}', built by a few joins, read by the server's
  array_in), so a thousand rows cost a few list comprehensions, not a thousand `mogrify`s or
  an ARRAY[...] of a thousand parsed constants. A `Same` column (one value repeated) is one
  parameter; `Stamps` (auto_now) are computed by the server from their start. Arrays are cast
  to the column's base type (text for varchar(n), numeric for numeric(p, s)): the INSERT's
  assignment then checks lengths and precision as it does for any value, where a cast to
  varchar(n) would silently truncate.
- `ids_next`: primary keys drawn ahead from the sequences, for rows that other rows point at.
- `instance_for`: a model instance built without `Model.__init__` (every concrete field set),
  for code that renders or passes on rows it has just written."""

import json
from datetime import timedelta
from functools import cache
from itertools import repeat

from django.db import connection
from django.db.models import NOT_PROVIDED
from django.db.models.base import ModelState
from django.utils import timezone

# Up to this many rows, `rows_insert` sends a VALUES list (the single-row paths' statement);
# above, arrays (`columns_insert`).
VALUES_MAX_ROWS = 8


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


def instance_for(model, values: dict, related: dict | None = None):
    """An instance of `model`, as loaded from the database (not adding), without the model's
    constructor: `values` by attname must name every concrete field (a missing one would be a
    deferred field, read back by a query on access). `related` caches loaded related objects
    by field name (`{"member": member}`), so that `order.member` makes no query."""
    obj = model.__new__(model)
    obj.__dict__.update(values)
    state = ModelState()
    state.adding = False
    state.db = "default"
    if related:
        state.fields_cache = dict(related)
    obj._state = state
    return obj


@cache
def _columns_meta(model) -> dict:
    """attname -> (quoted column, array type, is JSON) for every concrete field of `model`."""
    quote = connection.ops.quote_name
    meta = {}
    for f in model._meta.concrete_fields:
        db_type = f.db_type(connection)
        if db_type.endswith("]"):
            raise NotImplementedError(f"{model.__name__}.{f.name}: array columns are not sent")
        base = db_type.split("(")[0].strip().lower()
        if base in ("varchar", "character varying", "char", "character"):
            base = "text"
        # a serial type names its column's integer type; casts take the integer
        base = {"serial": "integer", "bigserial": "bigint", "smallserial": "smallint"}.get(
            base, base
        )
        is_json = f.get_internal_type() == "JSONField"
        meta[f.attname] = (quote(f.column), "text" if is_json else base, is_json)
    return meta


class Same(list):
    """A column of n copies of one value, for `columns_insert`: a list like any other to the
    caller, sent to the database as one parameter rather than an array of n."""

    __slots__ = ("value",)

    def __init__(self, value, n: int):
        super().__init__(repeat(value, n))
        self.value = value


class Stamps(list):
    """`start` plus the row's index in microseconds, for n rows: a list like any other to the
    caller, computed by the database from `start` (one parameter, not n timestamps)."""

    __slots__ = ("start",)

    def __init__(self, start, n: int):
        micro = timedelta(microseconds=1)
        super().__init__(start + micro * i for i in range(n))
        self.start = start


def auto_stamps(n: int, now=None) -> list:
    """`now` plus the row's index in microseconds, for n rows: the created_at / updated_at
    `rows_insert` gives auto_now fields (ordering by them keeps the order rows were given in)."""
    return Stamps(now or timezone.now(), n)


def columns_insert(
    model,
    columns: dict[str, list],
    *,
    returning: tuple[str, ...] = (),
    conflict: tuple[str, ...] | None = None,
    json_dumped: bool = False,
) -> list[tuple] | None:
    """Insert the rows given column by column (attname -> one list per column, all of one
    length) in one statement on Postgres. Fields not given take their default (a static
    default repeated, a callable one called per row), except an auto-increment primary key,
    which the database draws, and auto_now / auto_now_add fields, which get `auto_stamps` and
    are added to `columns` so the caller can read them. With `conflict` (field names of a
    unique constraint), colliding rows are skipped. Returns the `returning` attnames of the
    inserted rows, in insertion order (None when `returning` is empty). JSON fields' values are
    Python values, or JSON text already when `json_dumped`."""
    n = len(next(iter(columns.values())))
    if not n:
        return [] if returning else None
    pk_name, static, dynamic = _defaults(model)
    stamps = None
    for f in model._meta.concrete_fields:
        name = f.attname
        if name in columns:
            continue
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            # created_at and updated_at share one stamp per row, as `rows_insert` sets them
            stamps = stamps or auto_stamps(n)
            columns[name] = stamps
        elif name == pk_name and name not in dynamic:
            continue  # drawn by the database
        elif name in dynamic:
            make = dynamic[name]
            columns[name] = [make() for _ in range(n)]
        else:
            columns[name] = Same(static[name], n)
    if connection.vendor != "postgresql":
        return _columns_insert_elsewhere(
            model, columns, n, returning=returning, conflict=conflict, json_dumped=json_dumped
        )
    meta = _columns_meta(model)
    names = list(columns)
    scalars, arrays, casts, selects = [], [], [], []
    aliases: dict[int, str] = {}  # one array for columns given the same list (created/updated)
    for name in names:
        _, array_type, is_json = meta[name]
        values = columns[name]
        if len(values) != n:
            raise ValueError(f"Column {name} has {len(values)} values, not {n}")
        kind = type(values)
        if kind is Same:
            value = values.value
            if is_json and not json_dumped and value is not None:
                value = json.dumps(value)
            scalars.append(value)
            selects.append(f"%s::{array_type}" + ("::jsonb" if is_json else ""))
            continue
        if kind is Stamps and array_type == "timestamp with time zone":
            # the row's position (WITH ORDINALITY, from 1) in microseconds after the start:
            # exactly the list's values (timestamptz keeps microseconds)
            scalars.append(values.start)
            selects.append("(%s::timestamptz + (u.ord - 1) * interval '1 microsecond')")
            continue
        alias = aliases.get(id(values))
        if alias is None:
            alias = aliases[id(values)] = f"c{len(arrays)}"
            if is_json and not json_dumped:
                values = [None if v is None else json.dumps(v) for v in values]
            arrays.append(
                _array_literal(values, array_type) if array_type in _LITERAL_TYPES else values
            )
            casts.append(f"%s::{array_type}[]")
        selects.append(f"u.{alias}::jsonb" if is_json else f"u.{alias}")
    quote = connection.ops.quote_name
    if arrays:
        labels = ", ".join([*(f"c{i}" for i in range(len(arrays))), "ord"])
        source = f"unnest({', '.join(casts)}) WITH ORDINALITY AS u({labels})"
    else:
        source = "generate_series(1, %s) AS u(ord)"
        arrays = [n]
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608 - the model's own names
        f"({', '.join(meta[name][0] for name in names)}) "
        f"SELECT {', '.join(selects)} FROM {source}"
    )
    if conflict:
        keys = [model._meta.get_field(name) for name in conflict]
        sql += f" ON CONFLICT ({', '.join(quote(f.column) for f in keys)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(meta[name][0] for name in returning)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*scalars, *arrays])
        return cursor.fetchall() if returning else None


def _quoted(value) -> str:
    """An element of a Postgres array literal, double-quoted (so NULL, blanks, commas and
    braces stay text), backslash and double quote escaped."""
    text = value if type(value) is str else str(value)
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


# The array types `_array_literal` writes; any other column's list is adapted by psycopg2.
_LITERAL_TYPES = frozenset(
    (
        "bigint",
        "integer",
        "smallint",
        "numeric",
        "boolean",
        "timestamp with time zone",
        "date",
        "text",
        "uuid",
        "inet",
    )
)


def _array_literal(values: list, array_type: str) -> str:
    """`values` as one Postgres array literal ('{...}', one parameter that the server reads with
    array_in), rather than a list psycopg2 adapts element by element into an ARRAY[...]
    expression the server parses node by node: less work on both sides."""
    has_null = None in values
    if array_type in ("bigint", "integer", "smallint", "numeric"):
        if not has_null:
            return "{" + ",".join(map(str, values)) + "}"
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    if array_type == "boolean":
        return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"
    if array_type in ("timestamp with time zone", "date"):
        return (
            "{" + ",".join("NULL" if v is None else '"' + v.isoformat() + '"' for v in values) + "}"
        )
    if not has_null and all(type(v) is str for v in values):
        # Every element a string: escaped and quoted all at once, joined by NUL (which no
        # value can hold: Postgres text refuses it), unless one does (then one by one, and
        # the driver refuses it as before).
        body = "\x00".join(values)
        if body.count("\x00") == len(values) - 1:
            if "\\" in body or '"' in body:
                body = body.replace("\\", "\\\\").replace('"', '\\"')
            return '{"' + body.replace("\x00", '","') + '"}'
    if not has_null:
        return "{" + ",".join(map(_quoted, values)) + "}"
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"


def _columns_insert_elsewhere(model, columns, n, *, returning, conflict, json_dumped):
    """`columns_insert` off Postgres (SQLite, one writer at a time): bulk_create of instances;
    `returning` and `conflict` need the primary keys given (`ids_next`)."""
    pk_name = model._meta.pk.attname
    if conflict and pk_name not in columns:
        raise NotImplementedError("columns_insert: conflict needs the keys given here")
    json_names = {name for name, (_, _, is_json) in _json_flags(model).items() if is_json}
    names = list(columns)
    objs = []
    for i in range(n):
        values = {}
        for name in names:
            value = columns[name][i]
            if json_dumped and name in json_names and value is not None:
                value = json.loads(value)
            values[name] = value
        objs.append(model(**values))
    model.objects.bulk_create(objs, batch_size=500, ignore_conflicts=bool(conflict))
    for f in model._meta.concrete_fields:
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
            columns[f.attname] = [getattr(o, f.attname) for o in objs]
    if not returning:
        return None
    if pk_name not in columns:  # drawn by the database, set on the instances by bulk_create
        return [tuple(getattr(o, name) for name in returning) for o in objs]
    pks = columns[pk_name]
    found = {
        row[0]: row[1:] for row in model.objects.filter(pk__in=pks).values_list(pk_name, *returning)
    }
    if conflict:  # rows already there with other keys were skipped: keep those written here
        key = [model._meta.get_field(c).attname for c in conflict]
        mine = {pk: tuple(columns[k][i] for k in key) for i, pk in enumerate(pks)}
        written = {
            row[0]
            for row in model.objects.filter(pk__in=pks).values_list(pk_name, *key)
            if tuple(row[1:]) == mine[row[0]]
        }
        found = {pk: row for pk, row in found.items() if pk in written}
    return [tuple(found[pk]) for pk in pks if pk in found]


def _json_flags(model) -> dict:
    return {
        f.attname: (None, None, f.get_internal_type() == "JSONField")
        for f in model._meta.concrete_fields
    }


def ids_next(*models_and_counts: tuple) -> list[list[int]]:
    """Primary keys drawn ahead from each model's sequence, in one statement: for
    `(Order, 3), (Voucher, 3)`, `[[o1, o2, o3], [v1, v2, v3]]`. Rows inserted with them need no
    RETURNING, and rows that point at them can be built before."""
    n = max(count for _, count in models_and_counts)
    if not n:
        return [[] for _ in models_and_counts]
    if connection.vendor == "sqlite":
        return [_ids_next_sqlite(model, count) for model, count in models_and_counts]
    quote = connection.ops.quote_name
    selects = ", ".join(
        f"CASE WHEN g <= {int(count)} THEN "
        f"nextval(pg_get_serial_sequence('{quote(model._meta.db_table)}', "
        f"'{model._meta.pk.column}')) END"
        for model, count in models_and_counts
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {selects} FROM generate_series(1, %s) AS g ORDER BY g",  # noqa: S608
            [n],
        )
        rows = cursor.fetchall()
    return [[row[i] for row in rows[:count]] for i, (_, count) in enumerate(models_and_counts)]


def _ids_next_sqlite(model, count: int) -> list[int]:
    """SQLite (AUTOINCREMENT keys, one writer at a time): move the table's sqlite_sequence on
    by `count` in this transaction; the keys in between are ours."""
    if not count:
        return []
    table = model._meta.db_table
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "  # noqa: S608
            f"coalesce((SELECT max({quote(model._meta.pk.column)}) FROM {quote(table)}), 0))",
            [table],
        )
        start = cursor.fetchone()[0]
        cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
        cursor.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, start + count]
        )
    return list(range(start + 1, start + count + 1))


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
    if len(objs) > VALUES_MAX_ROWS:
        return _rows_insert_arrays(model, objs, returning_pk=returning_pk, conflict=conflict)
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
    return _inserted(objs, returned, [f.attname for f in keys], returning_pk=returning_pk)


def _rows_insert_arrays(model, objs: list, *, returning_pk: bool, conflict) -> list:
    """`rows_insert` through `columns_insert`: the same rows, columns, stamps and results."""
    meta = model._meta
    pk_name = meta.pk.attname
    names = [
        f.attname
        for f in meta.concrete_fields
        if not (f.primary_key and objs[0].pk is None)
        and not (getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
    ]
    auto = [
        f.attname
        for f in meta.concrete_fields
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
    ]
    columns = {name: [getattr(o, name) for o in objs] for name in names}
    # JSON values encoded as the VALUES path's psycopg2 Json encodes them: None is JSON null
    # there, not SQL NULL (which columns_insert would send for a Python None).
    for f in meta.concrete_fields:
        if f.attname in columns and f.get_internal_type() == "JSONField":
            columns[f.attname] = [json.dumps(v) for v in columns[f.attname]]
    stamps = auto_stamps(len(objs))
    for name in auto:
        columns[name] = stamps
        for obj, stamp in zip(objs, stamps, strict=True):
            setattr(obj, name, stamp)
    keys = tuple(conflict or ())
    fetch = returning_pk or bool(keys)
    key_names = tuple(meta.get_field(name).attname for name in keys)
    returned = columns_insert(
        model,
        columns,
        returning=(pk_name, *key_names) if fetch else (),
        conflict=keys or None,
        json_dumped=True,
    )
    if not fetch:
        return objs
    return _inserted(objs, returned, key_names, returning_pk=returning_pk)


def _inserted(objs: list, returned: list, key_names, *, returning_pk: bool) -> list:
    """The objects `rows_insert` inserted, given the rows RETURNING gave (pk, then the conflict
    columns named by `key_names`): with conflict columns, matched by them (unique, and distinct
    among `objs`; a skipped collision returns no row); without, in insertion order. Each gets
    its pk (with `returning_pk`) and, a model instance, is marked saved."""
    if key_names:
        by_key = {tuple(row[1:]): row[0] for row in returned}
        pairs = [(obj, by_key.get(tuple(getattr(obj, k) for k in key_names))) for obj in objs]
        pairs = [(obj, pk) for obj, pk in pairs if pk is not None]
    else:
        pairs = list(zip(objs, (row[0] for row in returned), strict=True))
    for obj, pk in pairs:
        if returning_pk:
            obj.pk = pk
        if not isinstance(obj, Row):
            obj._state.adding = False
    return [obj for obj, _ in pairs]
