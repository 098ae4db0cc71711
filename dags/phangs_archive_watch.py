"""airflow DAG ``phangs_archive_watch``: archive-driven processing.

Every hour (``$PHANGS_ARCHIVE_SCHEDULE``), scan the ``ms_root`` folders of the key set and the
S3 archive prefixes (``$PHANGS_ARCHIVE_URI`` or the Variable ``phangs_archive_uri``, read through
the connection ``phangs_archive``) for measurement sets that are new or changed since the last
scan (state in the catalog), download the S3 ones into the first ``ms_root``, start the DAG of
each target they belong to - exactly once per change - and report measurement sets that
belong to no target.
"""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, task

from phangs_operators.operators.archive import (
    ArchiveFetchOperator,
    ArchiveRecordOperator,
    ArchiveScanOperator,
)

WORKDIR = os.environ.get("PHANGS_ARCHIVE_WORKDIR",
                         os.path.join(os.environ.get("PHANGS_DEMO_ROOT", tempfile.gettempdir()), "archive_watch"))

with DAG(
    dag_id="phangs_archive_watch",
    dag_display_name="PHANGS archive watch",
    schedule=os.environ.get("PHANGS_ARCHIVE_SCHEDULE", "@hourly"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["phangs", "archive"],
    doc_md=__doc__,
    default_args={"owner": "phangs", "retries": 1},
) as dag:
    scan = ArchiveScanOperator(task_id="scan_archive", workdir=WORKDIR, force=True)
    fetch = ArchiveFetchOperator(task_id="fetch_archive", scan=scan.output, workdir=WORKDIR, force=True)

    @task(task_id="targets_to_run", owner="phangs", retries=1,
          doc_md="The trigger arguments (DAG id, deterministic run id) of the scan.")
    def targets_to_run(result: dict) -> list[dict]:
        return list(result.get("triggers", []))

    trigger = TriggerDagRunOperator.partial(
        task_id="trigger_target", skip_when_already_exists=True, wait_for_completion=False,
        doc_md="Start the DAG of a target whose measurement sets are new or changed.",
        owner="phangs", retries=1,
    ).expand_kwargs(targets_to_run(fetch.output))
    record = ArchiveRecordOperator(task_id="record_scan", scan=fetch.output, workdir=WORKDIR, force=True,
                                   trigger_rule="none_failed")
    trigger >> record
