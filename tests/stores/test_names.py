"""Names reach keys/paths only after validation; SQL-looking text is rejected as a name."""

from __future__ import annotations

import pytest

from phangs_operators.errors import StoreError
from phangs_operators.stores.names import product_key, temp_key, validate_label, validate_name
from phangs_operators.stores.provenance import Provenance, clean_uri

GOOD = ["ngc0628", "12m+7m+tp", "co21", "ngc0628_12m+7m+tp_co21_150pc_strict_mom0.fits", "a", "A-1.b"]
BAD = ["", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "_v2", "_tmp", "a..b", "a b", "x'; DROP TABLE products;--",
       "ngc0628\x00", "é", "a" * 201, "-rf", "+x", "name\n", None, 3]


@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", BAD)
def test_bad_names_are_rejected(name):
    with pytest.raises(StoreError, match="invalid"):
        validate_name(name, "target")


def test_error_names_the_field():
    with pytest.raises(StoreError, match="invalid target '../x'"):
        validate_name("../x", "target")


def test_label_allows_empty_only_as_native():
    assert validate_label("") == ""
    assert validate_label("150pc") == "150pc"
    with pytest.raises(StoreError):
        validate_label("a/b")


def test_key_layout_and_versions():
    assert product_key("ngc0628", "12m+7m", "co21", "cube.fits") == "ngc0628/12m+7m/co21/cube.fits"
    assert product_key("ngc0628", "12m+7m", "co21", "cube.fits", 3) == "ngc0628/12m+7m/co21/_v3/cube.fits"
    with pytest.raises(StoreError):
        product_key("ngc0628", "12m+7m", "co21", "cube.fits", 0)
    with pytest.raises(StoreError):
        product_key("../etc", "12m", "co21", "cube.fits")
    sha = "a" * 64
    assert temp_key("n", "c", "p", "f.fits", sha) == f"_tmp/n/c/p/{'a' * 32}/f.fits"
    with pytest.raises(StoreError):
        temp_key("n", "c", "p", "f.fits", "nothex")


def test_credentials_are_stripped_from_input_uris():
    assert clean_uri("s3://AKIA:secret@bucket/ms/x.ms?X-Amz-Signature=abc#f") == "s3://bucket/ms/x.ms"
    assert clean_uri("https://user:pw@host:8443/a") == "https://host:8443/a"
    assert clean_uri("/data/ms/x.ms") == "/data/ms/x.ms"
    prov = Provenance(inputs=[("s3://k:s@b/x.ms", "0" * 64), "file:///d/y.ms"])
    assert prov.inputs == (("s3://b/x.ms", "0" * 64), ("file:///d/y.ms", None))
    with pytest.raises(StoreError):
        Provenance(inputs=[("s3://b/x", "not-a-sha")])
