"""Stage 1 operators: visibilities of a target -> one staged measurement set per product."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from phangs_operators.operators.base import PhangsBaseOperator


class StageVisibilitiesOperator(PhangsBaseOperator):
    """Stage the calibrated visibilities of one (target, config, product).

    Splits the target's fields and the spw covering the line from every measurement set of
    the config's array tags, subtracts the continuum, regrids to the product's common LSRK
    velocity grid, concatenates the arrays and re-weights with ``statwt`` (line channels
    excluded) - PHANGS' VisHandler. For a continuum product the line-free channels are
    averaged to one channel per spw.

    XCom: ``{"ms": <staged MS>, "nchan": N, ...}`` (see ``routines.vis.StagingResult``).
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "ms_by_array", "out_ms",
                                      "target", "config", "product")
    stage = "staging"
    casa_step = True
    ui_color = "#fdf2d0"

    def __init__(self, *, ms_by_array: dict[str, list[str]], out_ms: str, target: str, config: str,
                 product: str, line: Mapping[str, Any] | None = None,
                 continuum: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ms_by_array = ms_by_array
        self.out_ms = out_ms
        self.target, self.config, self.product = target, config, product
        self.line = dict(line or {})
        self.continuum = dict(continuum or {})

    def inputs(self, context):
        return [p for paths in self.ms_by_array.values() for p in paths]

    def outputs(self, context):
        return [self.out_ms]

    def run_routine(self, context):
        from phangs_operators.routines import vis  # noqa: PLC0415

        if self.continuum or not self.line:
            return vis.stage_continuum_product(self.ms_by_array, self.out_ms, workdir=os.getcwd(),
                                               overwrite=self.overwrite,
                                               **self.continuum)
        return vis.stage_line_product(self.ms_by_array, self.out_ms, workdir=os.getcwd(),
                                      overwrite=self.overwrite, **self.line)
