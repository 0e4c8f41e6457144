"""Parse and check an IPA recipient file with plain functions.

The file as a whole is checked first (encoding, header, size in rows); its problems raise a
specific error and nothing is stored. Then every row is checked by `check_rows` in one pass:
per-row rules, duplicates inside the file and recipients already at the campaign's per-member
cap (a set the service fetched with one query). 100,000 rows take a few seconds."""

import codecs
import csv
import io
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from orders.uploads.errors import (
    UploadEmptyError,
    UploadEncodingError,
    UploadHeaderError,
    UploadMalformedError,
    UploadTooManyRowsError,
)
from plum.models import E164_REGEX, Channel

# The file's columns, in template order. A header must name the required ones; the others may
# be left out (channel: the default channel; value: the campaign's value; reference: none).
COLUMNS = ("external_id", "name", "email", "phone", "country", "channel", "value", "reference")
REQUIRED_COLUMNS = ("external_id", "name", "email", "phone", "country")
CHANNELS = frozenset(Channel.values)
PHONE_CHANNELS = frozenset({Channel.SMS.value, Channel.WHATSAPP.value})
MAX_LENGTHS = {"external_id": 120, "name": 200, "email": 254, "reference": 120}
_E164 = re.compile(E164_REGEX)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_SHOWN_VALUE = 200  # characters of an offending cell kept with its error


def decode(raw: bytes) -> str:
    """UTF-8 text, with or without a byte-order mark. Anything else is refused by name."""
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            raise UploadEncodingError(
                f"The file is {name} encoded; upload it as UTF-8 (“CSV UTF-8” in a spreadsheet).",
                encoding=name.lower(),
            )
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    if b"\x00" in raw:
        raise UploadEncodingError(
            "The file contains NUL bytes: it looks UTF-16 encoded; upload it as UTF-8.",
            encoding="utf-16",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UploadEncodingError(
            f"The file is not UTF-8: byte 0x{raw[exc.start]:02X} on line {line} is not valid "
            "UTF-8 (it looks like Latin-1 / Windows-1252). Save it as “CSV UTF-8” and upload "
            "again.",
            encoding="latin-1",
        ) from exc


def _column_name(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def check_header(names: list[str], *, required=REQUIRED_COLUMNS) -> list[int | None]:
    """Where each of COLUMNS sits in the header (None: absent). Missing, unknown and repeated
    columns are refused together, each named."""
    normalised = [_column_name(n) for n in names]
    present = [n for n in normalised if n]
    missing = [c for c in required if c not in present]
    unknown = sorted({n for n in present if n not in COLUMNS})
    repeated = sorted({n for n in present if present.count(n) > 1})
    if missing or unknown or repeated:
        parts = []
        if missing:
            parts.append(f"missing column(s): {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s): {', '.join(unknown)}")
        if repeated:
            parts.append(f"repeated column(s): {', '.join(repeated)}")
        raise UploadHeaderError(
            f"The header is not usable: {'; '.join(parts)}. The columns are {', '.join(COLUMNS)}.",
            fields={
                **({"missing": missing} if missing else {}),
                **({"unknown": unknown} if unknown else {}),
                **({"repeated": repeated} if repeated else {}),
            },
        )
    return [normalised.index(c) if c in normalised else None for c in COLUMNS]


@dataclass
class ParsedRows:
    """Rows as (row_number, cells in COLUMNS order, extra-cell problem or "")."""

    rows: list[tuple[int, tuple[str, ...], str]] = field(default_factory=list)


def parse_csv(text: str, *, max_rows: int) -> ParsedRows:
    """Records, not lines: a quoted cell may hold newlines. Row numbers are the spreadsheet's
    (the header is row 1); blank rows are skipped but keep their number."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise UploadEmptyError()
        positions = check_header(header)
        width = len(header)
        parsed = ParsedRows()
        rows = parsed.rows
        number = 1
        count = 0
        for record in reader:
            number += 1
            if not any(cell.strip() for cell in record):
                continue
            count += 1
            if count > max_rows:
                raise UploadTooManyRowsError(
                    f"The file has more than {max_rows:,} rows; the limit is {max_rows:,} rows "
                    "per upload. Split it into several files.",
                    limit=max_rows,
                )
            size = len(record)
            cells = tuple(
                record[i].strip() if i is not None and i < size else "" for i in positions
            )
            extra = ""
            if size > width and any(cell.strip() for cell in record[width:]):
                extra = f"The row has {size} cells; the header has {width}."
            rows.append((number, cells, extra))
    except csv.Error as exc:
        raise UploadMalformedError(
            f"The CSV is malformed near line {reader.line_num}: {exc}.", line=reader.line_num
        ) from exc
    if not parsed.rows:
        raise UploadEmptyError("The file has a header but no rows.")
    return parsed


def parse_json_rows(items: list, *, max_rows: int) -> ParsedRows:
    """JSON rows from an HR connector: objects keyed by the same column names. Unknown keys
    are refused like unknown CSV columns; row numbers are positions from 1."""
    if len(items) > max_rows:
        raise UploadTooManyRowsError(
            f"The request has {len(items):,} rows; the limit is {max_rows:,} rows per upload.",
            limit=max_rows,
        )
    if not items:
        raise UploadEmptyError("The request has no rows.")
    unknown: set[str] = set()
    parsed = ParsedRows()
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise UploadMalformedError(f"Row {number} is not an object.", line=number)
        keys = {_column_name(str(k)): v for k, v in item.items()}
        unknown |= set(keys) - set(COLUMNS)
        cells = tuple(
            ""
            if keys.get(c) is None
            else str(keys[c]).strip()
            if not isinstance(keys[c], bool)
            else "invalid"
            for c in COLUMNS
        )
        parsed.rows.append((number, cells, ""))
    if unknown:
        raise UploadHeaderError(
            f"Unknown field(s): {', '.join(sorted(unknown))}. The fields are {', '.join(COLUMNS)}.",
            fields={"unknown": sorted(unknown)},
        )
    return parsed


@dataclass
class Rules:
    """What a row is checked against: the campaign's values and the default channel."""

    default_channel: str
    campaign_value: Decimal
    denominations: frozenset = frozenset()
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    per_member_cap: int | None = None

    def accepts(self, value: Decimal) -> bool:
        if value == self.campaign_value:
            return True
        if self.denominations:
            return value in self.denominations
        if self.min_value is not None:
            return self.min_value <= value <= self.max_value
        return True

    def describe(self) -> str:
        if self.denominations:
            values = sorted(self.denominations | {self.campaign_value})
            return "one of " + ", ".join(str(v) for v in values)
        if self.min_value is not None:
            return f"between {self.min_value} and {self.max_value}"
        return "a positive amount"


@dataclass
class CheckedRow:
    row_number: int
    external_id: str
    name: str
    email: str
    phone: str
    country: str
    channel: str
    channel_from_file: bool
    value: Decimal | None
    reference: str
    errors: list[dict]


# Django's own e-mail patterns, compiled once here: the validator reaches them through lazy
# objects, which costs more than the match itself over 100,000 rows.
_EMAIL_USER = re.compile(validate_email.user_regex.pattern, validate_email.user_regex.flags)
_EMAIL_DOMAIN = re.compile(validate_email.domain_regex.pattern, validate_email.domain_regex.flags)


def _email_ok(text: str) -> bool:
    """Exactly what Member.email accepts (Django's EmailValidator): the common case (an ASCII
    domain name) by the compiled patterns, anything else by the validator itself."""
    user, at, domain = text.rpartition("@")
    if at and len(text) <= 320 and _EMAIL_USER.match(user) and _EMAIL_DOMAIN.match(domain):
        return True
    try:
        validate_email(text)
    except ValidationError:
        return False
    return True


def check_rows(parsed: ParsedRows, *, rules: Rules, at_cap: frozenset | set) -> list[CheckedRow]:
    """Every row against every rule, in one pass; each problem is (column, message, value)."""
    seen: dict[str, int] = {}
    out: list[CheckedRow] = []
    e164 = _E164.fullmatch
    country_ok = _COUNTRY.match
    for number, cells, extra in parsed.rows:
        external_id, name, email, phone, country, channel, value, reference = cells
        errors: list[dict] = []

        def error(column: str, message: str, cell: str = "", errors=errors) -> None:
            errors.append({"column": column, "message": message, "value": cell[:_SHOWN_VALUE]})

        if extra:
            error("", extra)
        if not external_id:
            error("external_id", "Required.")
        elif len(external_id) > MAX_LENGTHS["external_id"]:
            error("external_id", "At most 120 characters.", external_id)
        if len(name) > MAX_LENGTHS["name"]:
            error("name", "At most 200 characters.", name)
        channel_from_file = bool(channel)
        if channel:
            lowered = channel.lower()
            if lowered in CHANNELS:
                channel = lowered
            else:
                error("channel", "Unknown channel: use email, sms or whatsapp.", channel)
        else:
            channel = rules.default_channel
        if email:
            if len(email) > MAX_LENGTHS["email"] or not _email_ok(email):
                error("email", "Not a valid e-mail address.", email)
        elif channel == "email":
            error("email", "Required: this row is sent by e-mail.")
        if phone:
            if not e164(phone):
                error("phone", "Not an E.164 phone number (e.g. +14155550123).", phone)
        elif channel in PHONE_CHANNELS:
            error("phone", f"Required: this row is sent by {channel}.")
        if country:
            country = country.upper()
            if not country_ok(country):
                error("country", "Not an ISO 3166-1 alpha-2 country code (e.g. IN).", country)
        amount = None
        if value:
            try:
                amount = Decimal(value)
            except InvalidOperation:
                amount = None
            if (
                amount is None
                or not amount.is_finite()
                or amount <= 0
                or amount.as_tuple().exponent < -2
                or amount >= Decimal("1e12")
            ):
                error("value", "Not an amount (e.g. 500 or 500.00).", value)
                amount = None
            elif not rules.accepts(amount):
                error("value", f"The campaign issues {rules.describe()}.", value)
                amount = None
            else:
                amount = amount.quantize(Decimal("0.01"))
        if len(reference) > MAX_LENGTHS["reference"]:
            error("reference", "At most 120 characters.", reference)
        if external_id:
            first = seen.get(external_id)
            if first is not None:
                error(
                    "external_id",
                    f"Duplicate of row {first}: one row per recipient.",
                    external_id,
                )
            else:
                seen[external_id] = number
            if external_id in at_cap:
                error(
                    "external_id",
                    f"Already holds the campaign's per-member cap of {rules.per_member_cap}.",
                    external_id,
                )
        out.append(
            CheckedRow(
                number,
                external_id,
                name,
                email,
                phone,
                country,
                channel,
                channel_from_file,
                amount,
                reference,
                errors,
            )
        )
    return out
