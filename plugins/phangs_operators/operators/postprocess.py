"""Stage 3 operators: primary-beam correction + round beam, feathering, linear mosaics, export.

PHANGS order (PostProcessHandler): pbcor and round beam of the gathered interferometric cube;
feather with the single-dish cube for ``+tp`` configs; linear mosaic of multi-part targets;
then Kelvin, trim and the science-ready FITS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from phangs_operators.operators.base import PhangsBaseOperator


def _root(value: Any) -> str:
    return value["root"] if isinstance(value, Mapping) else str(value)


def _product(value: Any, ext: str) -> str:
    """``root + ext`` of an imaging XCom, or its Taylor-term-0 product (mtmfs continuum)."""
    if isinstance(value, Mapping):
        products = value.get("products") or {}
        for cand in (ext, ext + ".tt0"):
            if products.get(cand):
                return str(products[cand])
    root = _root(value)
    return root + ext + (".tt0" if not Path(root + ext).exists() and Path(root + ext + ".tt0").exists() else "")


def _image(value: Any) -> str:
    if isinstance(value, Mapping):
        return value.get("image") or value.get("out") or value["root"] + ".image"
    return str(value)


class PbcorRoundBeamOperator(PhangsBaseOperator):
    """Primary-beam correct the gathered cube (impbcor, PHANGS cutoff) and convolve every plane
    to one round beam (``sqrt(bmaj_max² + (2·pixel)²)``, rounded as PHANGS does).

    Writes ``<root>_pbcorr_round.image`` (and ``<root>_round.image``, flat noise, for feathering).
    XCom: ``{"image": ..., "flat": ..., "pb": ..., "beam_arcsec": ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "cube", "out_root")
    stage = "postprocess"
    casa_step = True
    ui_color = "#f8e0f0"

    def __init__(self, *, cube: Any, out_root: str, pb_cutoff: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cube, self.out_root, self.pb_cutoff = cube, out_root, pb_cutoff

    def outputs(self, context):
        return [self.out_root + "_pbcorr_round.image"]

    def run_routine(self, context):
        from phangs_operators.routines import postprocess as post  # noqa: PLC0415

        image, pb = _product(self.cube, ".image"), _product(self.cube, ".pb")
        pbcor = post.pbcor_cube(image, pb, self.out_root + "_pbcorr.image",
                                cutoff=self.pb_cutoff, workdir=os.getcwd(), overwrite=self.overwrite)
        rounded = post.round_beam(self.out_root + "_pbcorr.image", self.out_root + "_pbcorr_round.image",
                                  workdir=os.getcwd(), overwrite=self.overwrite)
        beam = rounded.to_dict().get("beam_arcsec")
        flat = post.round_beam(image, self.out_root + "_round.image", target_beam_arcsec=beam,
                               workdir=os.getcwd(), overwrite=self.overwrite)
        return {"image": self.out_root + "_pbcorr_round.image", "flat": self.out_root + "_round.image",
                "pb": pb, "beam_arcsec": beam, "pbcor": pbcor.to_dict(),
                "round": rounded.to_dict(), "flat_round": flat.to_dict()}


class FeatherOperator(PhangsBaseOperator):
    """Feather the interferometric cube with the single-dish (total power) cube.

    The TP FITS (3-D, Jy/beam or K) gets a Stokes axis, is reordered to RA, Dec, Stokes, Freq,
    regridded onto the interferometer cube (velocity axis too) and feathered with ``sdfactor``.
    ``area="interferometer"`` (default, PHANGS) limits the feathered cube to the interferometric
    footprint; ``"singledish"`` keeps the TP data over the whole TP map (see
    ``routines.postprocess.feather_cube``). ``model_image`` (a simulator's sky model, optional)
    adds the model flux and the recovered fraction to the QA record.
    XCom: ``{"image": <feathered>, "numbers": {interf/sd/feathered fluxes}, ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "interf", "singledish_fits",
                                      "out_image")
    stage = "postprocess"
    casa_step = True
    ui_color = "#f3d1ea"

    def __init__(self, *, interf: Any, singledish_fits: str, out_image: str, sdfactor: float = 1.0,
                 area: str = "interferometer", model_image: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interf, self.singledish_fits, self.out_image = interf, singledish_fits, out_image
        self.sdfactor = sdfactor
        self.area = area
        self.model_image = model_image

    def inputs(self, context):
        return [self.singledish_fits]

    def outputs(self, context):
        return [self.out_image]

    def run_routine(self, context):
        from phangs_operators.routines import postprocess as post  # noqa: PLC0415

        interf = _image(self.interf)
        sd_image = self.out_image.replace(".image", "_singledish.image")
        imported = post.import_singledish(self.singledish_fits, interf, sd_image, workdir=os.getcwd(),
                                          overwrite=self.overwrite)
        model = self.model_image if self.model_image and Path(self.model_image).exists() else None
        result = post.feather_cube(interf, sd_image, self.out_image, sdfactor=self.sdfactor, area=self.area,
                                   model_image=model, workdir=os.getcwd(), overwrite=self.overwrite)
        out = result.to_dict()
        out.update({"image": self.out_image, "singledish": imported.to_dict(),
                    "pb": self.interf.get("pb") if isinstance(self.interf, Mapping) else None})
        return out


class LinearMosaicOperator(PhangsBaseOperator):
    """Linear mosaic of the parts of a multi-part target: common grid and round beam,
    noise-weighted primary-beam weighting ``Σ I·pb²/σ² / Σ pb²/σ²``.

    XCom: ``{"image": <mosaic>, ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "parts", "out_image")
    stage = "postprocess"
    casa_step = True
    ui_color = "#ead1f3"

    def __init__(self, *, parts: Sequence[Any], out_image: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parts, self.out_image = parts, out_image

    def outputs(self, context):
        return [self.out_image]

    def run_routine(self, context):
        from phangs_operators.routines import postprocess as post  # noqa: PLC0415

        parts = list(self.parts)
        images = [_image(p) for p in parts]
        pbs = [p.get("pb") if isinstance(p, Mapping) else None for p in parts]
        out_pb = self.out_image[: -len(".image")] + ".pb"
        result = post.linear_mosaic(images, pbs, self.out_image, out_pb=out_pb, workdir=os.getcwd(),
                                    overwrite=self.overwrite)
        out = result.to_dict()
        out.update({"image": self.out_image, "pb": out_pb})
        return out


class ExportCubeOperator(PhangsBaseOperator):
    """Trim, convert to Kelvin and export the science-ready FITS with the PHANGS header
    cleanup: ``{t}_{c}_{p}_pbcorr_trimmed_k.fits`` (and the Jy/beam cube and trimmed primary
    beam next to it).

    XCom: ``{"fits": <K cube>, "fits_jybeam":, "fits_pb":, ...}``.
    """

    template_fields: Sequence[str] = (*PhangsBaseOperator.template_fields, "image", "out_fits")
    stage = "postprocess"
    casa_step = True
    ui_color = "#e7c6f0"

    def __init__(self, *, image: Any, out_fits: str, object_name: str | None = None,
                 continuum: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image, self.out_fits, self.object_name = image, out_fits, object_name
        self.continuum = continuum

    def outputs(self, context):
        return [self.out_fits]

    def run_routine(self, context):
        from phangs_operators.routines import postprocess as post  # noqa: PLC0415

        pb = self.image.get("pb") if isinstance(self.image, Mapping) else None
        result = post.finish_cube(_image(self.image), pb, self.out_fits, object_name=self.object_name,
                                  kind="continuum" if self.continuum else "cube", workdir=os.getcwd(),
                                  overwrite=self.overwrite)
        out = result.to_dict()
        outputs = out.get("outputs") or {}
        out.update({"fits": self.out_fits, "files": [v for k, v in outputs.items() if k.startswith("fits")]})
        return out
