"""Both store backends: upload/head/download/copy/list, checksums, connection validation."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from phangs_operators.errors import StoreError
from phangs_operators.stores import LocalProductStore, ProductStore, S3ProductStore
from phangs_operators.stores.objectstore import sha256_file
from tests.fixtures.services import aws_conn_json, free_port
from tests.stores.helpers import big_file

MiB = 1024 * 1024


def test_from_uri_picks_the_backend(tmp_path, moto_s3):
    assert isinstance(ProductStore.from_uri((tmp_path / "a").as_uri()), LocalProductStore)
    assert isinstance(ProductStore.from_uri(str(tmp_path / "b")), LocalProductStore)
    s3 = ProductStore.from_uri(f"s3://{moto_s3.bucket}/x/y", conn_id=moto_s3.conn_id)
    assert isinstance(s3, S3ProductStore) and s3.base_uri == f"s3://{moto_s3.bucket}/x/y"
    with pytest.raises(StoreError, match="unsupported store URI"):
        ProductStore.from_uri("gs://bucket/x")
    with pytest.raises(StoreError, match="makes no sense"):
        ProductStore.from_uri((tmp_path / "c").as_uri(), conn_id="x")


def test_round_trip_small_and_multipart(store, tmp_path):
    for size in (0, 1000, 12 * MiB + 7):  # 12 MiB > the 5 MiB part size of the s3 fixture: 3 parts
        src = big_file(tmp_path / f"in{size}.bin", size, seed=size)
        sha, n = sha256_file(src)
        info = store.upload(src, f"t/c/p/f{size}.bin", sha256=sha)
        assert (info.sha256, info.size) == (sha, size)
        head = store.head(f"t/c/p/f{size}.bin")
        assert head.sha256 == sha and head.size == size  # own checksum in object metadata
        assert store.hash_object(f"t/c/p/f{size}.bin") == (sha, size)
        out = store.download(f"t/c/p/f{size}.bin", tmp_path / f"out{size}.bin")
        assert out.sha256 == sha and sha256_file(tmp_path / f"out{size}.bin")[0] == sha
    keys = sorted(o.key for o in store.list("t/"))
    assert keys == ["t/c/p/f0.bin", "t/c/p/f1000.bin", f"t/c/p/f{12 * MiB + 7}.bin"]
    assert store.uri_for("t/c/p/f0.bin").startswith(store.base_uri + "/")
    assert store.key_from_uri(store.uri_for("t/c/p/f0.bin")) == "t/c/p/f0.bin"


def test_upload_detects_changed_bytes(store, tmp_path):
    src = big_file(tmp_path / "a.bin", 6 * MiB)
    with pytest.raises(StoreError, match="changed during upload"):
        store.upload(src, "t/x.bin", sha256="0" * 64)
    assert store.head("t/x.bin") is None  # nothing half-written left


def test_copy_sets_metadata_and_delete(store, tmp_path):
    src = big_file(tmp_path / "a.bin", 6 * MiB)
    sha, size = sha256_file(src)
    store.upload(src, "tmp/a.bin", sha256=sha)
    info = store.copy("tmp/a.bin", "final/a.bin", metadata={"sha256": sha, "phangs-version": "1"})
    assert info.sha256 == sha and info.size == size and info.metadata["phangs-version"] == "1"
    store.delete("tmp/a.bin")
    store.delete("tmp/a.bin")  # idempotent
    assert store.head("tmp/a.bin") is None and store.exists("final/a.bin")


@pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/../b", "a/", ""])
def test_keys_cannot_escape_the_base(store, key):
    with pytest.raises(StoreError, match="invalid object key"):
        store.head(key)


def test_foreign_uri_is_rejected(store):
    with pytest.raises(StoreError, match="is not inside the store"):
        store.key_from_uri("s3://other-bucket/x")


def test_multipart_copy_path(s3_store, tmp_path):
    s3_store.copy_part_size = 5 * MiB  # force UploadPartCopy for a 11 MiB object
    src = big_file(tmp_path / "a.bin", 11 * MiB)
    sha, size = sha256_file(src)
    s3_store.upload(src, "tmp/a.bin", sha256=sha)
    info = s3_store.copy("tmp/a.bin", "final/a.bin", metadata={"sha256": sha})
    assert (info.sha256, info.size) == (sha, size)
    assert s3_store.hash_object("final/a.bin") == (sha, size)


def test_unknown_connection_is_an_error_not_anonymous_access(moto_s3):
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="connection 'no_such_conn' is not defined"):
        ProductStore.from_uri(f"s3://{moto_s3.bucket}/x", conn_id="no_such_conn")
    assert time.monotonic() - t0 < 5


def test_wrong_connection_type(monkeypatch, moto_s3):
    monkeypatch.setenv("AIRFLOW_CONN_PG_NOT_S3", json.dumps({"conn_type": "postgres", "host": "h"}))
    with pytest.raises(StoreError, match="has type 'postgres'"):
        ProductStore.from_uri(f"s3://{moto_s3.bucket}/x", conn_id="pg_not_s3")


def test_unreachable_endpoint_fails_fast_and_clearly(monkeypatch):
    port = free_port()
    monkeypatch.setenv("AIRFLOW_CONN_DEAD_S3", aws_conn_json(f"http://127.0.0.1:{port}"))
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=rf"S3 endpoint http://127.0.0.1:{port} failed on HeadBucket"):
        ProductStore.from_uri("s3://bucket/x", conn_id="dead_s3")
    assert time.monotonic() - t0 < 15


def test_missing_bucket_is_clear(moto_s3):
    with pytest.raises(StoreError, match="HeadBucket no-such-bucket-x"):
        ProductStore.from_uri("s3://no-such-bucket-x/p", conn_id=moto_s3.conn_id)


@pytest.mark.slow
def test_200mb_multipart_round_trip(moto_s3, tmp_path):
    """Acceptance: a 200 MB cube, multipart (default 8 MiB parts), verified by re-hashing the object."""
    store = ProductStore.from_uri(f"s3://{moto_s3.bucket}/big", conn_id=moto_s3.conn_id)
    src = big_file(tmp_path / "cube.fits", 200 * 1000 * 1000)
    sha, size = sha256_file(src)
    t0 = time.monotonic()
    info = store.upload(src, "ngc0628/12m+7m/co21/cube.fits", sha256=sha)
    t_up = time.monotonic() - t0
    assert info.sha256 == sha and store.head("ngc0628/12m+7m/co21/cube.fits").sha256 == sha
    etag = moto_s3.client().head_object(Bucket=moto_s3.bucket, Key="big/ngc0628/12m+7m/co21/cube.fits")["ETag"]
    nparts = -(-size // store.part_size)
    assert nparts >= 10 and etag.strip('"').endswith(f"-{nparts}")  # multipart (ETag only looked at to prove it)
    t0 = time.monotonic()
    out = store.download("ngc0628/12m+7m/co21/cube.fits", tmp_path / "back.fits")
    t_down = time.monotonic() - t0
    assert out.sha256 == sha and out.size == size
    h = hashlib.sha256((tmp_path / "back.fits").read_bytes()).hexdigest()
    assert h == sha
    print(f"200 MB: upload {size / t_up / 1e6:.0f} MB/s, download {size / t_down / 1e6:.0f} MB/s")
    store.delete("ngc0628/12m+7m/co21/cube.fits")


def test_failed_part_aborts_the_multipart_upload(s3_store, tmp_path, monkeypatch):
    src = big_file(tmp_path / "a.bin", 30 * MiB)  # 6 parts of 5 MiB
    real = s3_store._upload_part

    def flaky(s3key, upload_id, number, data):
        if number == 3:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url=s3_store.endpoint)
        return real(s3key, upload_id, number, data)

    monkeypatch.setattr(s3_store, "_upload_part", flaky)
    with pytest.raises(StoreError, match="S3 endpoint .* failed on upload of"):
        s3_store.upload(src, "t/a.bin")
    assert s3_store.head("t/a.bin") is None
    ups = s3_store._client.list_multipart_uploads(Bucket=s3_store.bucket, Prefix=s3_store.prefix + "/")
    assert ups.get("Uploads", []) == []
