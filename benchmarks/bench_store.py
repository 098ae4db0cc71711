"""Benchmark of the product store and the catalog (run on demand, not in tests).

Measures, in the same run and against the same moto S3 server (started here as a child
process on a free 127.0.0.1 port):

* upload / download throughput of :class:`S3ProductStore` (SHA-256 computed while streaming,
  checksum in metadata; download re-hashes and checks) relative to a plain boto3
  ``upload_file`` / ``download_file`` of the same file (baseline, default TransferConfig);
* one full ``publish_products`` (hash, upload, verify by re-reading, copy, catalog row);
* catalog upsert rate for N rows (first insert and idempotent re-upsert), on SQLite and on
  PostgreSQL (127.0.0.1:5432, user postgres; a scratch database is created and dropped).

Usage::

    .venv/bin/python benchmarks/bench_store.py [--size-mb 200] [--repeat 3] [--rows 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT))

from tests.fixtures.services import aws_conn_json, start_moto_server, stop_process  # noqa: E402


def make_file(path: Path, nbytes: int) -> None:
    import numpy as np

    block = np.random.default_rng(0).bytes(8 * 1024 * 1024)
    with open(path, "wb") as f:
        left, i = nbytes, 0
        while left > 0:
            chunk = (i.to_bytes(8, "little") + block[8:])[:left]
            f.write(chunk)
            left -= len(chunk)
            i += 1


def timed(func) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


CPU: dict[str, list[float]] = {}


def timed_cpu(name: str, func) -> float:
    """Wall time of ``func``; its client-side CPU time (all threads of this process) goes to CPU[name]."""
    c0, t0 = time.process_time(), time.perf_counter()
    func()
    wall = time.perf_counter() - t0
    CPU.setdefault(name, []).append(time.process_time() - c0)
    return wall


def bench_s3(size_mb: int, repeat: int, workdir: Path) -> dict:
    started = start_moto_server(workdir / "moto_server.log")
    if started is None:
        raise SystemExit(f"moto server did not start; see {workdir / 'moto_server.log'}")
    proc, endpoint = started
    try:
        os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        os.environ["AIRFLOW_CONN_BENCH_S3"] = aws_conn_json(endpoint)
        import boto3

        from phangs_operators.stores import Catalog, ProductFile, ProductStore, publish_products
        from phangs_operators.stores.objectstore import sha256_file

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket="bench")
        store = ProductStore.from_uri("s3://bench/store", conn_id="bench_s3")
        src = workdir / "cube.fits"
        nbytes = size_mb * 1000 * 1000
        make_file(src, nbytes)
        sha, _ = sha256_file(src)
        rows: dict[str, list[float]] = {k: [] for k in ("boto3_up", "store_up", "boto3_down", "store_down")}
        for i in range(repeat):
            # alternate the order so neither side always runs on a warmer server
            order = ("boto3", "store") if i % 2 == 0 else ("store", "boto3")
            for who in order:
                if who == "boto3":
                    key = f"plain/{i}"
                    rows["boto3_up"].append(
                        timed_cpu("boto3_up", lambda k=key: client.upload_file(str(src), "bench", k)))
                    rows["boto3_down"].append(
                        timed_cpu("boto3_down", lambda k=key: client.download_file("bench", k, str(workdir / "b.out"))))
                    client.delete_object(Bucket="bench", Key=key)
                else:
                    key = f"x/{i}.fits"
                    rows["store_up"].append(timed_cpu("store_up", lambda k=key: store.upload(src, k, sha256=sha)))
                    rows["store_down"].append(timed_cpu("store_down", lambda k=key: store.download(k, workdir / "s.out")))
                    store.delete(key)
        cat = Catalog.from_url(f"sqlite:///{workdir / 'pub.db'}")
        spec = ProductFile(src, "ngc0628", "12m+7m", "co21", stage="pbcorr_trimmed_k", kind="cube")
        t_publish = timed(lambda: publish_products(store, cat, [spec]))
        t_noop = timed(lambda: publish_products(store, cat, [spec]))
        cat.close()
        best = {k: min(v) for k, v in rows.items()}
        median = {k: statistics.median(v) for k, v in rows.items()}
        mbps = {k: nbytes / v / 1e6 for k, v in best.items()}
        return {
            "size_mb": size_mb, "repeat": repeat, "best_seconds": best, "median_seconds": median,
            "MB_per_s_best": mbps,
            "upload_ratio_vs_boto3": mbps["store_up"] / mbps["boto3_up"],
            "download_ratio_vs_boto3": mbps["store_down"] / mbps["boto3_down"],
            "upload_ratio_vs_boto3_median": median["boto3_up"] / median["store_up"],
            "download_ratio_vs_boto3_median": median["boto3_down"] / median["store_down"],
            "client_cpu_seconds_median": {k: statistics.median(v) for k, v in CPU.items()},
            "publish_seconds": t_publish, "publish_MB_per_s": nbytes / t_publish / 1e6,
            "republish_noop_seconds": t_noop,
        }
    finally:
        stop_process(proc)


def bench_catalog(url: str, nrows: int) -> dict:
    from phangs_operators.stores import Catalog, ProductRecord

    cat = Catalog.from_url(url)
    recs = [ProductRecord(
        target=f"ngc{i % 100:04d}", config="12m+7m", product=f"co{i // 100}", stage="pbcorr_trimmed_k",
        kind="cube", resolution="", version=1, filename="cube.fits", uri=f"s3://b/{i}/cube.fits",
        size_bytes=i, sha256=f"{i:064x}", shape=[60, 64, 64], bmaj_arcsec=1.0, software={"astropy": "8"},
        inputs=[(f"s3://raw/{i}.ms", f"{i:064x}")]) for i in range(nrows)]
    batch = 1000

    def upsert_all() -> None:
        for k in range(0, nrows, batch):
            cat.upsert_records(recs[k:k + batch])

    t_insert = timed(upsert_all)
    t_update = timed(upsert_all)
    single = recs[:200]
    t_single = timed(lambda: [cat.upsert_records([r]) for r in single])
    assert cat.count() == nrows
    cat.close()
    return {"rows": nrows, "batch": batch,
            "insert_rows_per_s": nrows / t_insert, "reupsert_rows_per_s": nrows / t_update,
            "one_row_per_transaction_rows_per_s": len(single) / t_single}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--skip-s3", action="store_true")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        work = Path(tmp)
        os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow_home"))
        if not args.skip_s3:
            out["s3"] = bench_s3(args.size_mb, args.repeat, work)
        out["catalog_sqlite"] = bench_catalog(f"sqlite:///{work / 'cat.db'}", args.rows)
        import psycopg2

        name = f"bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        try:
            out["catalog_postgres"] = bench_catalog(f"postgresql://postgres@127.0.0.1:5432/{name}", args.rows)
        finally:
            with admin.cursor() as cur:
                cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.close()
    out["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
