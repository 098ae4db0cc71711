"""Line table and pure line helpers (REFERENCE 11.C)."""

from __future__ import annotations

import pytest

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import (
    LINE_FAMILIES,
    LINE_REST_FREQUENCIES_GHZ,
    expand_line_families,
    get_ghz_range_for_line,
    get_ghz_ranges_for_lines,
    get_line_frequency_ghz,
    is_line_family,
    merge_ranges,
)


def test_phangs_rest_frequencies():
    assert LINE_REST_FREQUENCIES_GHZ["co21"] == 230.53800
    assert LINE_REST_FREQUENCIES_GHZ["13co21"] == 220.39868
    assert LINE_REST_FREQUENCIES_GHZ["c18o21"] == 219.56035
    assert get_line_frequency_ghz("CO(2-1)") == 230.538
    for family, members in LINE_FAMILIES.items():
        assert members and all(m in LINE_REST_FREQUENCIES_GHZ for m in members), family
        assert is_line_family(family)
    assert not is_line_family("co21")
    with pytest.raises(KeyFileError, match="unknown line 'xx99'"):
        get_line_frequency_ghz("xx99")


def test_ghz_range_for_co21_exact():
    lo, hi = get_ghz_range_for_line("co21", vsys_kms=657, vwidth_kms=254)
    assert lo == pytest.approx(229.935110, abs=5e-7)
    assert hi == pytest.approx(230.130434, abs=5e-7)
    # the same interval given as vlow/vhigh, and with an explicit rest frequency
    assert get_ghz_range_for_line("co21", vlow_kms=530, vhigh_kms=784) == pytest.approx((lo, hi))
    assert get_ghz_range_for_line(restfreq_ghz=230.538, vsys_kms=657, vwidth_kms=254) == pytest.approx((lo, hi))
    with pytest.raises(KeyFileError, match="needs vsys_kms"):
        get_ghz_range_for_line("co21", vsys_kms=657)


def test_family_expansion():
    assert expand_line_families(["co"]) == ["co10", "co21", "co32", "co43", "co54", "co65"]
    out = expand_line_families(["co", "13co", "c18o", "hcn", "hcop", "co21"])
    assert len(out) == 6 + 6 + 6 + 7 + 7  # co21 not repeated
    assert out[:2] == ["co10", "co21"] and out[-1] == "hcop76"
    assert expand_line_families("13co21") == ["13co21"]
    with pytest.raises(KeyFileError, match="unknown line or line family 'cs'"):
        expand_line_families(["co", "cs"])


def test_merge_ranges():
    assert merge_ranges([(3, 4), (1, 2), (1.5, 2.5), (2.5, 3)]) == [(1, 4)]
    assert merge_ranges([(5, 6), (1, 2)]) == [(1, 2), (5, 6)]
    assert merge_ranges([]) == []


def test_ghz_ranges_for_phangs_flag_families():
    ranges = get_ghz_ranges_for_lines(["co", "13co", "c18o", "hcn", "hcop"], vsys_kms=657, vwidth_kms=254)
    assert ranges == sorted(ranges)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # merged: disjoint
    assert len(ranges) == 32  # no two transitions overlap for a 254 km/s window
    assert (pytest.approx(229.935110, abs=5e-7), pytest.approx(230.130434, abs=5e-7)) in [
        (lo, hi) for lo, hi in ranges]
    # a very wide window merges the neighbouring 13CO(2-1) and C18O(2-1) ranges
    wide = get_ghz_ranges_for_lines(["13co21", "c18o21"], vsys_kms=0, vwidth_kms=2000)
    assert len(wide) == 1
