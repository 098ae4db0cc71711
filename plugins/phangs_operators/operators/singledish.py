"""Stage 0 operator: ALMA total-power measurement sets of a target -> its single-dish cube."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from phangs_operators.operators.base import PhangsBaseOperator


class SingleDishCubeOperator(PhangsBaseOperator):
    """Reduce the TP measurement sets of one (target, line product) to a single-dish cube.

    sdcal (``ps``/``otfraster`` + ``tsys`` when the data allow it), ON-source selection,
    polynomial baseline over the line-free channels (``sdbaseline``), ``tsdimaging`` onto the
    product's LSRK radio velocity grid, K -> Jy/beam (``jyperk.csv`` or the image beam's
    factor), FITS export and validation - PHANGS' SingleDishHandler. The cube is what
    feathering takes for the ``+tp`` configs.

    XCom: ``{"out_fits": ..., "beam_arcsec": ..., "baseline_rms": ..., "total_flux_jykms": ...}``
    (see ``routines.singledish.SingleDishResult``).
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "tp_ms", "out_fits",
                                      "jyperk_csv", "target", "product")
    stage = "total_power"
    casa_step = True
    ui_color = "#e3f4e1"

    def __init__(self, *, tp_ms: Sequence[str], out_fits: str, target: str, product: str,
                 restfreq_ghz: float, vsys_kms: float, vwidth_kms: float, chan_dv_kms: float,
                 phasecenter: str, bl_order: int = 1, line_wing_kms: float = 200.0,
                 jyperk_csv: str | Sequence[str] | None = None, velocity_grid_kms: Sequence[float] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tp_ms = list(tp_ms)
        self.out_fits = out_fits
        self.target, self.product = target, product
        self.restfreq_ghz = float(restfreq_ghz)
        self.vsys_kms, self.vwidth_kms, self.chan_dv_kms = float(vsys_kms), float(vwidth_kms), float(chan_dv_kms)
        self.phasecenter = phasecenter
        self.bl_order = int(bl_order)
        self.line_wing_kms = float(line_wing_kms)
        self.jyperk_csv = jyperk_csv
        self.velocity_grid_kms = list(velocity_grid_kms) if velocity_grid_kms is not None else None

    def _jyperk_list(self) -> list[str]:
        if not self.jyperk_csv:
            return []
        return [self.jyperk_csv] if isinstance(self.jyperk_csv, str) else list(self.jyperk_csv)

    def inputs(self, context):
        return [*self.tp_ms, *self._jyperk_list()]

    def outputs(self, context):
        return [self.out_fits]

    def run_routine(self, context):
        from phangs_operators.routines import singledish  # noqa: PLC0415

        return singledish.make_singledish_cube(
            self.tp_ms, self.out_fits, restfreq_ghz=self.restfreq_ghz, vsys_kms=self.vsys_kms,
            vwidth_kms=self.vwidth_kms, chan_dv_kms=self.chan_dv_kms, bl_order=self.bl_order,
            line_wing_kms=self.line_wing_kms, phasecenter=self.phasecenter, jyperk_csv=self._jyperk_list() or None,
            velocity_grid_kms=self.velocity_grid_kms, workdir=os.getcwd(), overwrite=True)
