"""The products hook and the quick-look routine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from matplotlib.image import imread

from phangs_operators.errors import CubeError
from phangs_operators.routines.quicklook import cube_quicklooks, map_quicklook, quicklooks_for
from tests.stores.helpers import small_cube, small_map


def test_hook_resolves_store_and_catalog_from_connections(monkeypatch, moto_s3, postgres_url):
    from phangs_operators.hooks.products import PhangsProductsHook

    db = postgres_url.rsplit("/", 1)[1]
    monkeypatch.setenv("AIRFLOW_CONN_PHANGS_CATALOG", json.dumps(
        {"conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres", "schema": db}))
    hook = PhangsProductsHook(f"s3://{moto_s3.bucket}/hook", products_conn_id=moto_s3.conn_id)
    ok, msg = hook.test_connection()
    assert ok, msg
    store, cat = hook.get_conn()
    assert store.base_uri == f"s3://{moto_s3.bucket}/hook" and cat.dialect == "postgresql"
    hook.close()
    bad = PhangsProductsHook(f"s3://{moto_s3.bucket}/hook", products_conn_id="nope")
    ok, msg = bad.test_connection()
    assert not ok and "'nope' is not defined" in msg


def test_cube_quicklooks(tmp_path):
    cube = small_cube(tmp_path / "ngc0628_12m+7m_co21.fits")
    res = cube_quicklooks(cube, tmp_path / "ql")
    assert sorted(res.outputs) == ["peak", "spectrum"]
    assert res.outputs["peak"].name == "ngc0628_12m+7m_co21_peak.png"
    for png in res.outputs.values():
        img = imread(png)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # something was drawn
    data = fits.getdata(cube)
    assert res.peak_value == pytest.approx(float(np.nanmax(data)))
    assert res.finite_fraction == 1.0 and res.warnings == []
    assert json.dumps(res.to_dict())
    assert not list((tmp_path / "ql").glob(".*"))  # no temporary files left


def test_map_quicklook_and_dispatch(tmp_path):
    m = small_map(tmp_path / "mom0.fits")
    res = map_quicklook(m, tmp_path / "ql")
    assert list(res.outputs) == ["map"] and imread(res.outputs["map"]).shape[0] > 200
    assert list(quicklooks_for(m, tmp_path / "ql2").outputs) == ["map"]
    assert sorted(quicklooks_for(small_cube(tmp_path / "c.fits"), tmp_path / "ql3").outputs) == ["peak", "spectrum"]
    # identical input -> byte-identical PNG (so re-publishing is a no-op)
    assert (tmp_path / "ql" / "mom0_map.png").read_bytes() == (tmp_path / "ql2" / "mom0_map.png").read_bytes()


def test_all_nan_and_wrong_dimensions(tmp_path):
    cube = small_cube(tmp_path / "c.fits")
    with fits.open(cube, mode="update") as hdul:
        hdul[0].data[:] = np.nan
    res = cube_quicklooks(cube, tmp_path / "ql")
    assert res.peak_value is None and "all pixels are NaN" in res.warnings[0]
    with pytest.raises(CubeError, match="expected a 2-D map"):
        map_quicklook(small_cube(tmp_path / "c2.fits"), tmp_path / "ql")
    with pytest.raises(CubeError, match="expected a cube"):
        cube_quicklooks(small_map(tmp_path / "m.fits"), tmp_path / "ql")
