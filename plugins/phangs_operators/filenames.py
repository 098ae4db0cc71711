"""PHANGS file names (``utilsFilenames`` of the original), as pure functions.

The names are part of the contract with the astronomers (they are what the public
PHANGS-ALMA release uses), so they are built in one place only.

Examples
--------
>>> cube_filename("ngc0628", "12m+7m", "co21", casa=True)
'ngc0628_12m+7m_co21.image'
>>> cube_filename("ngc0628", "12m+7m+tp", "co21", ext="pbcorr_trimmed_k")
'ngc0628_12m+7m+tp_co21_pbcorr_trimmed_k.fits'
>>> vis_filename("ngc0628", "12m+7m", "co21")
'ngc0628_12m+7m_co21.ms'
>>> staged_msname("ngc0628", "2012.1.00650", "7m", 1, product="co21")
'ngc0628_2012.1.00650_7m_1_co21.ms'
>>> derived_filename("ngc0628", "12m+7m+tp", "co21", res="150pc", ext="_strictmask")
'ngc0628_12m+7m+tp_co21_150pc_strictmask.fits'
"""

from __future__ import annotations


def _cleanup(name: str) -> str:
    name = name.replace("__", "_").replace("__", "_")
    return name.replace("_.", ".")


def cube_filename(target: str, config: str, product: str, ext: str | None = None,
                  casa: bool = False, casaext: str = ".image") -> str:
    """``{target}_{config}_{product}[_{ext}]{.fits|casaext}`` with PHANGS' ``__``/``_.`` cleanup."""
    name = f"{target}_{config}_{product}"
    if ext:
        name += f"_{ext}"
    name += casaext if casa else ".fits"
    return _cleanup(name)


def vis_filename(target: str, config: str, product: str, ext: str | None = None,
                 suffix: str | None = None) -> str:
    """``{target}_{config}_{product}[_{ext}].ms[.{suffix}]``."""
    return _ms_name(f"{target}_{config}_{product}", (ext,), suffix)


def staged_msname(target: str, project: str, array_tag: str, obsnum: int | str,
                  product: str | None = None, ext: str | None = None,
                  suffix: str | None = None) -> str:
    """``{target}_{project}_{array_tag}_{obsnum}[_{product}][_{ext}].ms[.{suffix}]`` (no cleanup)."""
    return _ms_name(f"{target}_{project}_{array_tag}_{obsnum}", (product, ext), suffix)


def _ms_name(stem: str, optional: tuple[str | None, ...], suffix: str | None) -> str:
    """``{stem}[_{optional[0]}][_{optional[1]}]...ms[.{suffix}]`` (empty/None parts left out)."""
    name = stem + "".join(f"_{part}" for part in optional if part)
    name += ".ms"
    if suffix:
        name += f".{suffix}"
    return name


def derived_filename(target: str, config: str, product: str, res: str | None = None,
                     ext: str = "") -> str:
    """Stage-4 names: ``{target}_{config}_{product}[_{res}]{ext}.fits``.

    ``ext`` carries its leading underscore as in the moment key (``_strict_mom0``).
    """
    name = f"{target}_{config}_{product}"
    if res:
        name += f"_{res}"
    name += f"{ext}.fits"
    return _cleanup(name)
