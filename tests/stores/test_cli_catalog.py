"""`phangs catalog list/show/verify` against a published catalog."""

from __future__ import annotations

import json

import pytest

from phangs_operators.cli import main
from phangs_operators.stores import Catalog, ProductStore, publish_products
from tests.stores.helpers import cube_file, small_cube, small_map


@pytest.fixture
def published(tmp_path, sqlite_url):
    store = ProductStore.from_uri((tmp_path / "store").as_uri())
    cat = Catalog.from_url(sqlite_url)
    res = publish_products(store, cat, [
        cube_file(small_cube(tmp_path / "ngc0628_12m+7m_co21.fits"), inputs=[("s3://raw/a.ms", "1" * 64)]),
        cube_file(small_map(tmp_path / "ngc0628_12m+7m_co21_mom0.fits"), kind="moment", stage="strict_mom0"),
        cube_file(small_cube(tmp_path / "ngc3627_12m+7m_co21.fits", seed=9), target="ngc3627"),
    ])
    cat.close()
    return store, sqlite_url, res


def test_list_filters_and_json(published, capsys):
    store, url, res = published
    assert main(["catalog", "list", "--catalog", url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3
    assert main(["catalog", "list", "--catalog", url, "--target", "ngc0628", "--kind", "moment", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["filename"] for r in rows] == ["ngc0628_12m+7m_co21_mom0.fits"]
    assert main(["catalog", "list", "--catalog", url, "--target", "ngc3627"]) == 0
    out = capsys.readouterr().out
    assert "ngc3627_12m+7m_co21.fits" in out and "ngc0628" not in out and out.startswith("target")
    assert main(["catalog", "list", "--catalog", url, "--target", "x' OR '1'='1"]) == 0
    assert capsys.readouterr().out.strip() == "no products"


def test_show(published, capsys):
    store, url, res = published
    uri = res.products[0].uri
    assert main(["catalog", "show", uri, "--catalog", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["uri"] == uri and data["inputs"] == [["s3://raw/a.ms", "1" * 64]] and data["shape"] == [12, 16, 16]
    assert main(["catalog", "show", uri, "--catalog", url]) == 0
    assert "s3://raw/a.ms" in capsys.readouterr().out
    assert main(["catalog", "show", "file:///nope", "--catalog", url]) == 1
    assert "is not in the catalog" in capsys.readouterr().err


def test_verify_healthy_then_corrupted(published, capsys, tmp_path):
    store, url, res = published
    assert main(["catalog", "verify", "--catalog", url]) == 0
    assert "3 ok, 0 damaged, 0 missing" in capsys.readouterr().out
    key = store.key_from_uri(res.products[2].uri)
    path = store.base / key
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip one byte in place
    path.write_bytes(bytes(data))
    assert main(["catalog", "verify", "--catalog", url, "--store", store.base_uri, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [m["uri"] for m in report["mismatched"]] == [res.products[2].uri] and not report["healthy"]
    assert main(["catalog", "verify", "--catalog", url]) == 1
    assert "DAMAGED" in capsys.readouterr().out


def test_unreachable_catalog_is_one_line_error(capsys):
    assert main(["catalog", "list", "--catalog", "postgresql://u@127.0.0.1:1/x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("phangs catalog: error: catalog database not reachable") and "\n" not in err


def test_empty_catalog_is_reported_not_created(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["catalog", "list", "--catalog", url]) == 1
    assert "has no schema yet" in capsys.readouterr().err
