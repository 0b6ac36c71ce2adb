"""crc32c of a whole from the crc32c of its parts (zlib's ``crc32_combine``, for crc32c).

A raw conversion hashes every TIFF page it converts (the stored per-frame ``*_crc32c``) and
also records each TIFF's whole-file crc32c (provenance). Hashing the file a second time was
about 15% of a conversion's CPU time, so the whole-file value is put together from the page
hashes the tasks computed and the hashes of the bytes between them (headers, page directories,
channels not converted):

>>> from sscxr_conversion.crc import concat_crc32c, crc32c
>>> data = b"sscxr: raw stacks, hashed in pieces"
>>> parts = [data[:5], data[5:21], data[21:]]
>>> concat_crc32c([(crc32c(p), len(p)) for p in parts]) == crc32c(data)
True

How: a crc32c register is affine over GF(2), so with ``f(v, B)`` the crc32c of ``B`` continued
from ``v``, ``crc(A + B) = L_n(crc(A)) ^ crc(B)`` where ``L_n`` (``n = len(B)``) is the linear map
"append ``n`` zero bytes". ``L_1`` is read off the ``crc32c`` package itself (32 one-byte hashes,
no polynomial typed in here); ``L_n`` is a product of its cached powers of two, applied through
four 256-entry byte tables: about 2 us per part in Python.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import crc32c as _crc32c

__all__ = ["concat_crc32c", "crc32c", "crc32c_combine"]

Columns = tuple[int, ...]  # a 32x32 GF(2) matrix: the image of each bit of the register


def crc32c(data: bytes | memoryview, value: int = 0) -> int:
    """crc32c of ``data`` (continued from ``value``, the crc32c of what came before)."""
    return int(_crc32c.crc32c(data, value))


def _apply(columns: Columns, v: int) -> int:
    out, k = 0, 0
    while v:
        if v & 1:
            out ^= columns[k]
        v >>= 1
        k += 1
    return out


@functools.cache
def _power(j: int) -> Columns:
    """``L_(2**j)``: appending 2**j zero bytes."""
    if j == 0:
        zero = crc32c(b"\0")
        return tuple(crc32c(b"\0", 1 << k) ^ zero for k in range(32))
    half = _power(j - 1)
    return tuple(_apply(half, c) for c in half)


class _Shift:
    """``L_n`` as four byte tables (``v -> L_n(v)`` in four lookups)."""

    def __init__(self, n: int):
        columns: Columns = tuple(1 << k for k in range(32))  # identity: L_0
        j = 0
        while n >> j:
            if (n >> j) & 1:
                power = _power(j)
                columns = tuple(_apply(power, c) for c in columns)
            j += 1
        self.tables = []
        for byte in range(4):
            table = [0] * 256
            for b in range(1, 256):
                low = b & -b  # table[b] = table[b without its lowest bit] ^ column of that bit
                table[b] = table[b ^ low] ^ columns[8 * byte + low.bit_length() - 1]
            self.tables.append(table)

    def __call__(self, v: int) -> int:
        t0, t1, t2, t3 = self.tables
        return t0[v & 0xFF] ^ t1[(v >> 8) & 0xFF] ^ t2[(v >> 16) & 0xFF] ^ t3[v >> 24]


@functools.lru_cache(maxsize=256)
def _shift(n: int) -> _Shift:
    return _Shift(n)


def crc32c_combine(crc_a: int, crc_b: int, len_b: int) -> int:
    """crc32c of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``.

    >>> crc32c_combine(crc32c(b"1234"), crc32c(b"56789"), 5) == crc32c(b"123456789")
    True
    """
    if len_b < 0:
        raise ValueError(f"a part cannot have {len_b} bytes")
    return _shift(len_b)(crc_a) ^ crc_b if len_b else crc_a


def concat_crc32c(parts: Iterable[tuple[int, int]]) -> int:
    """crc32c of the concatenation of parts given as ``(crc32c, length)``, in order."""
    value = 0
    for crc, length in parts:
        value = crc32c_combine(value, crc, length)
    return value
