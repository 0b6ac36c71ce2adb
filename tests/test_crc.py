"""crc32c of a whole from its parts (sscxr_conversion.crc), checked against hashing the whole."""

from __future__ import annotations

import doctest

import crc32c as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscxr_conversion import crc
from sscxr_conversion.crc import concat_crc32c, crc32c, crc32c_combine


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_parts_combine_to_the_crc32c_of_the_whole(data: bytes, cuts: list[int]) -> None:
    bounds = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    parts = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert concat_crc32c([(crc32c(p), len(p)) for p in parts]) == reference.crc32c(data)


@pytest.mark.parametrize("n", [1, 255, 256, 4096, 524_288, 524_289, 3 * 2**20 + 7])
def test_long_parts_use_every_power_of_two(n: int) -> None:
    """Lengths of one raw page (512 x 512 x 2 bytes) and odd ones around it."""
    head, body = b"II*\x00 header", bytes(range(256)) * (n // 256) + bytes(n % 256)
    assert len(body) == n
    assert crc32c_combine(crc32c(head), crc32c(body), n) == reference.crc32c(head + body)
    assert crc32c_combine(crc32c(body), crc32c(head), len(head)) == reference.crc32c(body + head)


def test_empty_parts_and_bad_lengths() -> None:
    assert concat_crc32c([]) == reference.crc32c(b"") == 0
    assert concat_crc32c([(0, 0), (crc32c(b"abc"), 3), (0, 0)]) == reference.crc32c(b"abc")
    with pytest.raises(ValueError, match="-1 bytes"):
        crc32c_combine(1, 2, -1)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(crc, raise_on_error=True).attempted >= 2
