"""cloudmesh range syntax: a[1-3] -> a1,a2,a3."""

from __future__ import annotations

import pytest

from jobmesh.common.ranges import MAX_EXPANSION, expand, expand_one, split_top

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a[1-3]", ["a1", "a2", "a3"]),
        ("a[1-2,5],a10", ["a1", "a2", "a5", "a10"]),
        ("a", ["a"]),
        ("a,b,c", ["a", "b", "c"]),
        (" a , b ", ["a", "b"]),
        ("n[08-11]", ["n08", "n09", "n10", "n11"]),  # zero padding is kept
        ("x[1-2]y", ["x1y", "x2y"]),  # text after the bracket
        ("b[x,y]", ["bx", "by"]),  # plain words inside the bracket
        ("s[3-3]", ["s3"]),
        ("start,a[1-2],end", ["start", "a1", "a2", "end"]),
        ("", []),
        ("a,,b", ["a", "b"]),
    ],
)
def test_expand(text: str, expected: list[str]) -> None:
    assert expand(text) == expected


def test_expand_keeps_order_and_duplicates() -> None:
    # Order matters: a chain a[3-1] is an error, but a3,a1 is written order.
    assert expand("a3,a[1-2],a1") == ["a3", "a1", "a2", "a1"]


def test_split_top_does_not_split_inside_brackets() -> None:
    assert split_top("a[1,2],b,c[3-4,6]") == ["a[1,2]", "b", "c[3-4,6]"]


def test_expand_one_without_brackets_is_itself() -> None:
    assert expand_one("fetch-data.sh") == ["fetch-data.sh"]


@pytest.mark.parametrize(
    "text, words",
    [
        ("a[3-1]", "end is below the start"),
        ("a[1-2", "bad range"),
        ("a[]", "bad range"),
        ("a]", "bad range"),
        ("a[1-2][3-4]", "bad range"),
        ("a[1,,2]", "empty item"),
    ],
)
def test_bad_ranges_raise_with_a_hint(text: str, words: str) -> None:
    with pytest.raises(ValueError) as err:
        expand(text)
    assert words in str(err.value)
    assert repr(text) in str(err.value)  # the message names the bad text


def test_huge_range_is_refused() -> None:
    with pytest.raises(ValueError, match="too large"):
        expand_one(f"a[0-{MAX_EXPANSION + 1}]")


def test_largest_allowed_range_expands() -> None:
    out = expand_one(f"a[1-{MAX_EXPANSION + 1}]")
    assert len(out) == MAX_EXPANSION + 1
    assert out[0] == "a1" and out[-1] == f"a{MAX_EXPANSION + 1}"


def test_ranges_are_counted_before_they_are_expanded() -> None:
    from jobmesh.common.ranges import count, expand

    text = ",".join(f"n[{i * 100000}-{i * 100000 + 99999}]" for i in range(5))
    assert count(text) == 500_000 and count("a,b[1-3],c[7]") == 5
    with pytest.raises(ValueError, match="expands into 500000 names, more than the limit"):
        expand(text, limit=10_000)
    with pytest.raises(ValueError, match="too large"):
        count("n[0-99999999999999999999]")
    assert expand("a[1-3]", limit=3) == ["a1", "a2", "a3"]
