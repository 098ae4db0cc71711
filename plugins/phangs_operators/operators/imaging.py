"""Stage 2 operators: plan channel chunks, image them (mapped), gather, or clean one cube.

Chunked imaging as a DAG (PHANGS ImagingChunkedHandler)::

    plan_chunks ─► dirty_chunk[i] (mapped) ─► chunk_threshold ─► clean_chunk[i] (mapped) ─► gather

Every chunk images the same staged MS (opened read-only by tclean, safe to share) with an
integer channel range, ``interpolation='nearest'`` and a per-plane restoring beam; the clean
threshold comes from the noise of the *whole* dirty cube, so chunks clean like one cube.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phangs_operators.errors import ImagingError
from phangs_operators.operators.base import PhangsBaseOperator

#: default upper bound of mapped chunk instances per task (Airflow degrades beyond ~500)
MAX_CHUNKS = 200


def ms_path(value: Any) -> str:
    """The MS path of a staging XCom (``out_ms``) or a plain path."""
    if isinstance(value, Mapping):
        return str(value.get("out_ms") or value["ms"])
    return str(value)


def chunk_root(chunk_dir: str, name: str, start: int, nchan: int) -> str:
    """Image root name of one chunk: ``<chunk_dir>/<name>_ch<start>-<end>``."""
    return str(Path(chunk_dir) / f"{name}_ch{start:04d}-{start + nchan - 1:04d}")


class PlanChunksOperator(PhangsBaseOperator):
    """Split the staged cube's channels into chunks for dynamic task mapping.

    ``nchan`` usually comes from the staging task's XCom (the channel count of the staged MS);
    ``chunk_size`` from the DAG params. When the plan would exceed ``max_chunks`` mapped
    instances the chunk size grows to fit (logged); a plan beyond Airflow's
    ``core.max_map_length`` is an error.

    XCom: ``[{"start": 0, "nchan": 10}, ...]``, ready for ``.expand_kwargs()``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "nchan", "chunk_size")
    stage = "imaging"
    ui_color = "#e3f4e1"

    def __init__(self, *, nchan: int | str | Mapping[str, Any], chunk_size: int | str,
                 max_chunks: int = MAX_CHUNKS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nchan = nchan
        self.chunk_size = chunk_size
        self.max_chunks = max_chunks

    def run_routine(self, context):
        from phangs_operators.routines.imaging import plan_chunks  # noqa: PLC0415

        nchan = self.nchan["nchan"] if isinstance(self.nchan, Mapping) else self.nchan
        nchan, size = int(nchan), int(self.chunk_size)
        if nchan < 1 or size < 1:
            raise ImagingError(f"cannot plan chunks for nchan={nchan}, chunk_size={size}")
        if math.ceil(nchan / size) > self.max_chunks:
            new = math.ceil(nchan / self.max_chunks)
            self.log.warning("chunk size %d gives %d chunks > %d: using chunk size %d",
                             size, math.ceil(nchan / size), self.max_chunks, new)
            size = new
        try:
            from airflow.configuration import conf  # noqa: PLC0415

            max_map = conf.getint("core", "max_map_length", fallback=1024)
        except Exception:  # pragma: no cover - outside Airflow
            max_map = 1024
        chunks = plan_chunks(nchan, size)
        if len(chunks) > max_map:
            raise ImagingError(f"{len(chunks)} chunks exceed Airflow's core.max_map_length={max_map}")
        self.log.info("%d channels -> %d chunks of <= %d channels", nchan, len(chunks), size)
        return [{"start": int(c["start"]), "nchan": int(c["nchan"])} for c in chunks]


class ImageChunkOperator(PhangsBaseOperator):
    """Image one channel chunk of a staged MS (mapped over the plan).

    ``mode='dirty'``: the dirty chunk (noise estimate, mask alignment). ``mode='clean'``: the
    PHANGS multiscale-to-convergence then single-scale clean of the chunk down to
    ``threshold_jy`` (from the whole dirty cube's noise, via :class:`ChunkThresholdOperator`).

    XCom: ``{"root": <image root>, "start":, "nchan":, ...}`` (``routines.imaging.ImagingResult``).
    """

    # tclean_kw is not templated: recipe values such as "" must reach tclean unchanged
    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "ms", "chunk_dir",
                                      "threshold_jy", "mask", "geometry", "clean_kw")
    stage = "imaging"
    casa_step = True
    ui_color = "#d4edda"

    def __init__(self, *, ms: str | Mapping[str, Any], chunk_dir: str, name: str, start: int, nchan: int,
                 mode: str = "clean", tclean_kw: Mapping[str, Any] | None = None,
                 geometry: Mapping[str, Any] | None = None, threshold_jy: float | str | None = None,
                 mask: str | None = None, clean_kw: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("map_index_template", "{{ chunk_label }}")
        super().__init__(**kwargs)
        if mode not in ("dirty", "clean"):
            raise ValueError(f"mode must be 'dirty' or 'clean', not {mode!r}")
        self.ms, self.chunk_dir, self.name = ms, chunk_dir, name
        self.start, self.nchan, self.mode = int(start), int(nchan), mode
        self.tclean_kw = dict(tclean_kw or {})
        self.geometry = geometry
        self.threshold_jy = threshold_jy
        self.mask = mask
        self.clean_kw = dict(clean_kw or {})

    @property
    def root(self) -> str:
        suffix = "_dirty" if self.mode == "dirty" else ""
        return chunk_root(self.chunk_dir, self.name + suffix, self.start, self.nchan)

    def _ms(self) -> str:
        return ms_path(self.ms)

    def inputs(self, context):
        return [self._ms()]

    def outputs(self, context):
        return [self.root + ".image"]

    def execute(self, context):
        context["chunk_label"] = f"{self.name} ch {self.start}-{self.start + self.nchan - 1} ({self.mode})"
        return super().execute(context)

    def run_routine(self, context):
        from phangs_operators.routines import imaging  # noqa: PLC0415

        geometry = dict(self.geometry) if self.geometry else None
        tclean_kw = dict(self.tclean_kw)
        scales = tclean_kw.pop("scales_arcsec", None)
        extra = dict(self.clean_kw)
        if self.mode == "dirty":
            extra.pop("niter", None)
            return imaging.make_dirty_cube(self._ms(), self.root, geometry=geometry, tclean_kw=tclean_kw,
                                           workdir=os.getcwd(), start=self.start, nchan=self.nchan,
                                           mask=self.mask or None, overwrite=self.overwrite, **extra)
        threshold = self.threshold_jy
        noise = None
        if isinstance(threshold, Mapping):  # from ChunkThresholdOperator: the PHANGS recipe
            noise, threshold = threshold.get("noise_jy"), None
        elif threshold in ("", None) or float(threshold) <= 0:
            threshold = None
        if extra.get("niter") is not None:
            tclean_kw["niter"] = int(extra.pop("niter"))
        if scales is not None:
            extra["scales_arcsec"] = scales
        return imaging.image_chunk(self._ms(), self.root, start=self.start, nchan=self.nchan,
                                   geometry=geometry, tclean_kw=tclean_kw,
                                   threshold_jy=float(threshold) if threshold is not None else None,
                                   noise_jy=float(noise) if noise is not None else None,
                                   mask=self.mask or None, workdir=os.getcwd(), overwrite=self.overwrite,
                                   **extra)


class ImageGeometryOperator(PhangsBaseOperator):
    """Image geometry of a staged MS: cell from the beam, FFT-friendly imsize, phase centre.

    XCom: ``{"cell": "0.25arcsec", "imsize": [...], "phasecenter": ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "ms", "geometry_kw")
    stage = "imaging"
    casa_step = True

    def __init__(self, *, ms: str | Mapping[str, Any], geometry_kw: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ms = ms
        self.geometry_kw = dict(geometry_kw or {})

    def run_routine(self, context):
        from phangs_operators.routines import imaging  # noqa: PLC0415

        ms = ms_path(self.ms)
        return imaging.image_geometry(ms, **self.geometry_kw)


class ChunkThresholdOperator(PhangsBaseOperator):
    """Noise of the whole dirty cube from its chunks -> the clean threshold for every chunk.

    XCom: ``{"noise_jy": σ, "threshold_jy": k·σ, ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "dirty_chunks")
    stage = "imaging"
    casa_step = True

    def __init__(self, *, dirty_chunks: Any, threshold_nsigma: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dirty_chunks = dirty_chunks
        self.threshold_nsigma = threshold_nsigma

    def run_routine(self, context):
        from phangs_operators.routines import imaging  # noqa: PLC0415

        roots = [c["root"] if isinstance(c, Mapping) else c for c in list(self.dirty_chunks)]
        return imaging.chunks_threshold(roots, nsigma=self.threshold_nsigma)


class GatherCubeOperator(PhangsBaseOperator):
    """Concatenate the imaged chunks (.image .residual .psf .pb .model .mask) into one cube.

    XCom: ``{"root": <cube root>, ...}``; the common/round beam is applied only after this.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "chunks", "out_root")
    stage = "imaging"
    casa_step = True
    ui_color = "#c3e6cb"

    def __init__(self, *, chunks: Any, out_root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chunks = chunks
        self.out_root = out_root

    def outputs(self, context):
        return [self.out_root + ".image", self.out_root + ".pb"]

    def run_routine(self, context):
        from phangs_operators.routines import imaging  # noqa: PLC0415

        chunks = sorted((dict(c) for c in list(self.chunks)), key=lambda c: int(c.get("start", 0)))
        return imaging.gather_chunks([c["root"] for c in chunks], self.out_root, overwrite=self.overwrite)


class CleanCubeOperator(PhangsBaseOperator):
    """Monolithic imaging of a whole staged MS (continuum, or cubes too small to chunk):
    dirty -> noise -> multiscale clean to convergence -> re-mask -> single-scale clean.

    XCom: ``{"root": <image root>, "loops": [...], ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "ms", "out_root", "geometry",
                                      "mask")
    stage = "imaging"
    casa_step = True

    def __init__(self, *, ms: str | Mapping[str, Any], out_root: str,
                 tclean_kw: Mapping[str, Any] | None = None,
                 geometry: Mapping[str, Any] | None = None, mask: str | None = None,
                 clean_kw: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ms, self.out_root = ms, out_root
        self.tclean_kw = dict(tclean_kw or {})
        self.geometry = geometry
        self.mask = mask
        self.clean_kw = dict(clean_kw or {})

    def outputs(self, context):
        mfs = str(self.tclean_kw.get("specmode", "")).lower() == "mfs"
        return [self.out_root + (".image.tt0" if mfs else ".image")]

    def run_routine(self, context):
        from phangs_operators.routines import imaging  # noqa: PLC0415

        ms = ms_path(self.ms)
        tclean_kw = dict(self.tclean_kw)
        scales = tclean_kw.pop("scales_arcsec", None)
        extra = dict(self.clean_kw)
        if scales is not None:
            extra["scales_arcsec"] = scales
        geometry = dict(self.geometry) if self.geometry else None
        if str(tclean_kw.get("specmode", "")).lower() == "mfs":
            extra.pop("restfreq_ghz", None)
            return imaging.clean_continuum(ms, self.out_root, geometry=geometry, tclean_kw=tclean_kw,
                                           mask=self.mask or None, workdir=os.getcwd(),
                                           overwrite=self.overwrite, **extra)
        return imaging.clean_cube(ms, self.out_root, geometry=geometry, tclean_kw=tclean_kw,
                                  mask=self.mask or None, workdir=os.getcwd(), overwrite=self.overwrite, **extra)
