"""Reuse of the phangs operators without key files: image one measurement set.

Operators from ``phangs_operators`` - image geometry (cell and size from the MS, or the
params), plan the channel chunks, image each chunk (dynamic task mapping), gather the chunks
into one cube - on any calibrated, continuum-subtracted measurement set. The MS path and the
imaging parameters are params of the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param

from phangs_operators.operators.imaging import (
    GatherCubeOperator,
    ImageChunkOperator,
    ImageGeometryOperator,
    PlanChunksOperator,
)

DEFAULT_MS = os.environ.get("PHANGS_EXAMPLE_MS", "/data/phangs/example/galaxy_12m_co21.ms")
WORKDIR = os.environ.get("PHANGS_EXAMPLE_WORKDIR", "/tmp/phangs-example")

with DAG(
    dag_id="phangs_example_image_one_ms",
    dag_display_name="Example: image one MS in channel chunks",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["phangs", "example"],
    doc_md=__doc__,
    default_args={"owner": "phangs", "retries": 1},
    render_template_as_native_obj=True,
    params={
        "ms": Param(DEFAULT_MS, type="string", title="Measurement set",
                    description="Path of a calibrated, continuum-subtracted MS on the workers."),
        "nchan": Param(20, type="integer", minimum=1, title="Channels to image"),
        "chunk_size": Param(5, type="integer", minimum=1, title="Channels per chunk"),
        "cell_arcsec": Param(0.5, type="number", exclusiveMinimum=0, title="Cell (arcsec)"),
        "imsize": Param(128, type="integer", minimum=16, maximum=8192, title="Image size (pixels)"),
        "threshold_jy": Param(0.0, type="number", minimum=0, title="Clean threshold (Jy/beam)"),
        "niter": Param(0, type="integer", minimum=0, title="Clean iterations (0 = dirty cube)"),
    },
) as dag:
    geometry = ImageGeometryOperator(task_id="image_geometry", ms="{{ params.ms }}", workdir=WORKDIR,
                                     geometry_kw={"cell_arcsec": "{{ params.cell_arcsec }}",
                                                  "imsize": "{{ params.imsize }}"})
    plan = PlanChunksOperator(task_id="plan_chunks", nchan="{{ params.nchan }}",
                              chunk_size="{{ params.chunk_size }}", workdir=WORKDIR)
    chunks = ImageChunkOperator.partial(
        task_id="image_chunk", ms="{{ params.ms }}", chunk_dir=str(Path(WORKDIR) / "chunks"),
        name="example", mode="clean", workdir=WORKDIR, threshold_jy="{{ params.threshold_jy }}",
        geometry=geometry.output,
        tclean_kw={"specmode": "cube", "deconvolver": "hogbom", "niter": 0, "gridder": "standard",
                   "weighting": "briggs", "robust": 0.5},
        clean_kw={"niter": "{{ params.niter }}"},
    ).expand_kwargs(plan.output)
    GatherCubeOperator(task_id="gather_cube", chunks=chunks.output,
                       out_root=str(Path(WORKDIR) / "example_cube"), workdir=WORKDIR)
