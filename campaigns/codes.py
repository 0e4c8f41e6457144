"""Voucher code format: random characters from an unambiguous alphabet (no 0/O/1/I/L) drawn
from `secrets`, and a final check character.

The check character makes the weighted sum of the whole code (prefix included) divisible by
31, weighting characters 1, 2, 3, … from the right. 31 is prime and the weights are distinct
and non-zero below 31 positions, so every single mistyped character and every swap of two
neighbours is caught without a lookup."""

import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
BASE = len(ALPHABET)  # 31
VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
MAX_CODE_LENGTH = 30  # weights stay below 31, so every position is protected
DEFAULT_LENGTH = 13  # 13 × log2(31) ≈ 64.4 bits

_ALPHABET_BYTES = ALPHABET.encode()
_ACCEPT = BASE * (256 // BASE)  # 248: reject higher bytes so every character is equally likely
_TRANSLATE = bytes(_ALPHABET_BYTES[b % BASE] if b < _ACCEPT else 0 for b in range(256))
_REJECT = bytes(range(_ACCEPT, 256))


def normalize(code: str) -> str:
    """What people type → what is stored: upper case, no spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def is_well_formed(code: str) -> bool:
    """True when every character is in the alphabet and the check character matches."""
    if not 2 <= len(code) <= MAX_CODE_LENGTH or any(ch not in VALUE for ch in code):
        return False
    total = sum((weight + 1) * VALUE[ch] for weight, ch in enumerate(reversed(code)))
    return total % BASE == 0


def validate_prefix(prefix: str) -> str | None:
    """An error message, or None when the prefix can carry a check character."""
    bad = sorted({ch for ch in prefix if ch not in VALUE})
    if bad:
        return f"Prefix characters must come from {ALPHABET} (not {''.join(bad)})."
    return None


class CodeGenerator:
    """Generates codes of one format quickly: the random bytes come from `secrets` in bulk,
    mapped to the alphabet with rejection sampling, and the check character is computed with
    per-position tables."""

    def __init__(self, *, prefix: str = "", length: int = DEFAULT_LENGTH):
        if validate_prefix(prefix):
            raise ValueError(validate_prefix(prefix))
        if len(prefix) + length + 1 > MAX_CODE_LENGTH:
            raise ValueError(f"Codes are at most {MAX_CODE_LENGTH} characters.")
        self.prefix = prefix
        self.length = length
        # Body character at position p (0 = leftmost) has weight length - p + 1 from the right.
        self._tables = []
        for p in range(length):
            weight = length - p + 1
            table = [0] * 256
            for ch, value in VALUE.items():
                table[ord(ch)] = weight * value % BASE
            self._tables.append(table)
        self._prefix_sum = sum(
            (length + 1 + i + 1) * VALUE[ch] for i, ch in enumerate(reversed(prefix))
        )

    def generate(self, count: int) -> list[str]:
        need = count * self.length
        chars = bytearray()
        while len(chars) < need:
            raw = secrets.token_bytes((need - len(chars)) * 264 // 248 + 64)
            chars += raw.translate(_TRANSLATE, _REJECT)
        codes = []
        tables, length, prefix, prefix_sum = (
            self._tables,
            self.length,
            self.prefix,
            self._prefix_sum,
        )
        for i in range(count):
            body = chars[i * length : (i + 1) * length]
            total = prefix_sum
            for table, ch in zip(tables, body, strict=True):
                total += table[ch]
            codes.append(prefix + body.decode() + ALPHABET[-total % BASE])
        return codes
