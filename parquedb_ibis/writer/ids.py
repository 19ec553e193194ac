"""Identifiers: monotonic ULIDs for events, commits and files; entity ids.

A ULID is 48 bits of milliseconds since the epoch and 80 random bits, written
in Crockford base32 (26 characters) so that text order is time order. Within
one process the generator is monotonic: ids made in the same millisecond
increment the random part, so a writer's event ids always sort in the order
they were made.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_NS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,127}$")


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters


def _encode(value: int, length: int) -> str:
    """``value`` in Crockford base32, ``length`` (even) characters, two characters per table lookup."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in range(5 * (length - 2), -1, -10)])


def _encode_run(first: int, count: int) -> list[str]:
    """ULIDs ``first, first + 1, ...``: the leading 18 characters are encoded once per run that shares them."""
    out: list[str] = []
    value, end = first, first + count
    while value < end:
        high, low = value >> 40, value & 0xFF_FFFF_FFFF
        prefix = _encode(high, 18)
        stop = min(end - value, (1 << 40) - low)  # ids until the low 40 bits wrap
        pairs = _PAIRS
        out.extend([prefix + pairs[lo >> 30] + pairs[(lo >> 20) & 1023] + pairs[(lo >> 10) & 1023] + pairs[lo & 1023]
                    for lo in range(low, low + stop)])
        value += stop
    return out


class UlidGenerator:
    """Thread-safe monotonic ULIDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def new_many(self, count: int) -> list[str]:
        """``count`` consecutive ULIDs of one millisecond (one lock, one clock read)."""
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            if self._last_rand + count >= 1 << 80:
                ms += 1
                self._last_rand = 0
            first = (ms << 80) | (self._last_rand + 1)
            self._last_ms, self._last_rand = ms, self._last_rand + count
        return _encode_run(first, count)

    def new(self, now_ms: int | None = None) -> str:
        with self._lock:
            ms = int(time.time() * 1000) if now_ms is None else now_ms
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_rand += 1
                if self._last_rand >= 1 << 80:  # astronomically unlikely: move to the next millisecond
                    ms += 1
                    self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
            self._last_ms = ms
            return _encode((ms << 80) | self._last_rand, 26)


_GENERATOR = UlidGenerator()


def new_ulid() -> str:
    """A new monotonic ULID."""
    return _GENERATOR.new()


def new_ulids(count: int) -> list[str]:
    """``count`` new monotonic ULIDs, faster than calling :func:`new_ulid` in a loop."""
    return _GENERATOR.new_many(count) if count > 0 else []


def ulid_time(ulid: str) -> dt.datetime:
    """The UTC time encoded in a ULID's first 10 characters."""
    ms = 0
    for ch in ulid[:10].upper():
        ms = ms * 32 + _DECODE[ch]
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def is_valid_namespace(name: str) -> bool:
    """Namespace names: letters, digits, '_' and '-', not starting with '_', '$', '.' or '-'."""
    return isinstance(name, str) and bool(_NS_RE.match(name))
