"""Repairing the millisecond timestamps upstream writes as wrapped INT32.

hyparquet-writer infers INT32 for every integer-valued JS number and writes it
modulo 2**32 without a range check, so an epoch-ms value ``t`` is stored as
``signed_int32(t mod 2**32)`` (upstream-format.md §2, §5.9). The low 32 bits
survive exactly; only the multiple of 2**32 ms (about 49.7 days) is lost. Any
reference time within half of that window gives it back exactly:

* ``unwrap_nearest(stored, ref)``: the value congruent to ``stored`` closest to
  ``ref``. For family-A entity events the reference is the event's own ULID
  (the DO takes ``ts`` and the id from consecutive ``Date.now()`` calls).
* ``unwrap_not_after(stored, bound)``: the latest value congruent to ``stored``
  that is ``<= bound``. For files whose name carries the flush time
  (``logs-{ms}.parquet``, ``errors-{ms}.parquet``) and for ``rel_N`` events
  (the file's checkpoint ULID): every row was produced before the flush.

A value outside the int32 range was not wrapped (a correct INT64 column, or
the JSON-in-``PAR1`` fallback file) and is returned unchanged.

Pure: no I/O.
"""

from __future__ import annotations

import re

import numpy as np

#: 2**32 ms, the period of the wrap (about 49.7 days).
WRAP = 1 << 32
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_VALUE = {c: i for i, c in enumerate(_CROCKFORD)}
_CROCKFORD_VALUE.update({c.lower(): i for c, i in list(_CROCKFORD_VALUE.items())})
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")


def is_ulid(text: str) -> bool:
    """True for a 26-character Crockford base32 ULID (either case)."""
    return bool(_ULID.match(text))


def ulid_ms(ulid: str) -> int:
    """The epoch milliseconds in a ULID's first 10 characters.

    >>> ulid_ms("01M84NTB8400000061SJ1X20ZM")
    1795453431044
    """
    if not is_ulid(ulid):
        raise ValueError(f"not a ULID: {ulid!r}")
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _CROCKFORD_VALUE[char]
    return value


def is_wrapped(value: int) -> bool:
    """True when ``value`` lies in the int32 range, i.e. may be a wrapped timestamp."""
    return INT32_MIN <= value <= INT32_MAX


def unwrap_nearest(stored: int, reference_ms: int) -> int:
    """The timestamp congruent to ``stored`` (mod 2**32) nearest to ``reference_ms``.

    >>> unwrap_nearest(157101318, 1795453431044)
    1795453431046
    """
    if not is_wrapped(stored):
        return stored
    delta = (stored - reference_ms) % WRAP
    if delta >= WRAP // 2:
        delta -= WRAP
    return reference_ms + delta


def unwrap_not_after(stored: int, bound_ms: int) -> int:
    """The latest timestamp congruent to ``stored`` (mod 2**32) that is ``<= bound_ms``.

    >>> unwrap_not_after(522812489, 1735689700000)
    1735689600073
    """
    if not is_wrapped(stored):
        return stored
    return bound_ms - ((bound_ms - stored) % WRAP)


def unwrap_array(stored: np.ndarray, reference_ms: np.ndarray | int, *, nearest: bool) -> np.ndarray:
    """Vectorised :func:`unwrap_nearest` / :func:`unwrap_not_after` over int64 arrays."""
    values = np.asarray(stored, dtype=np.int64)
    ref = np.asarray(reference_ms, dtype=np.int64)
    if nearest:
        delta = np.mod(values - ref, WRAP)
        delta = np.where(delta >= WRAP // 2, delta - WRAP, delta)
        repaired = ref + delta
    else:
        repaired = ref - np.mod(ref - values, WRAP)
    return np.where((values >= INT32_MIN) & (values <= INT32_MAX), repaired, values)
