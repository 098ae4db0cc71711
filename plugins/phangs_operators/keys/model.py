"""The validated project model built from a PHANGS key set (see :mod:`phangs_operators.keys`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import lines as _lines
from phangs_operators.keys.issues import KeyIssue

#: imaging stages of a recipe, in the order their files are read into one tclean parameter set
IMAGING_STAGES: tuple[str, ...] = ("dirty", "multiscale", "singlescale")

#: single-valued directory roots of the master key
SINGLE_ROOTS: tuple[str, ...] = ("imaging_root", "postprocess_root", "derived_root", "release_root")
#: multi-valued (search path) roots of the master key
MULTI_ROOTS: tuple[str, ...] = ("ms_root", "singledish_root", "cleanmask_root", "vfield_root")

#: fields of ``derived_key`` holding keyword dictionaries
DERIVED_KW_FIELDS: tuple[str, ...] = (
    "noise_kw",
    "strictmask_kw",
    "broadmask_kw",
    "flatstrictmask_kw",
    "flatbroadmask_kw",
    "convolve_kw",
    "shuffle_kw",
)


@dataclass(frozen=True)
class Target:
    """One ``target_definitions`` row: phase centre and velocities (km/s, LSRK radio)."""

    name: str
    ra: str
    dec: str
    vsys_kms: float
    vwidth_kms: float
    file: str
    line: int

    @property
    def phasecenter(self) -> str:
        """tclean phase centre string, ``'J2000 <ra> <dec>'``."""
        return f"J2000 {self.ra} {self.dec}"


@dataclass(frozen=True)
class MsEntry:
    """One ``ms_file_key`` row: a calibrated measurement set of a target."""

    target: str
    project: str
    field: str
    array_tag: str
    obsnum: str
    filename: str
    file: str
    line: int

    @property
    def field_selection(self) -> str:
        """Field selection for split/mstransform (``'all'`` -> ``''``, i.e. all science fields)."""
        return "" if self.field.lower() == "all" else self.field


@dataclass(frozen=True)
class LineProduct:
    """A spectral-line product (``line_product`` in ``config_definitions``)."""

    name: str
    line_tag: str
    channel_kms: float
    statwt_edge_kms: float = 50.0
    fitorder: int = 0
    combinespw: bool = False
    lines_to_flag: tuple[str, ...] = ()
    exclude_freq_ranges_ghz: tuple[tuple[float, float], ...] = ()
    flag_edge_fraction: float = 0.0

    @property
    def rest_frequency_ghz(self) -> float:
        """Rest frequency of ``line_tag`` in GHz."""
        return _lines.get_line_frequency_ghz(self.line_tag)


@dataclass(frozen=True)
class ContProduct:
    """A continuum product (``cont_product``); frequencies in GHz."""

    name: str
    freq_ranges_ghz: tuple[tuple[float, float], ...] = ()
    channel_ghz: float = 0.0
    lines_to_flag: tuple[str, ...] = ()


@dataclass(frozen=True)
class InterfConfig:
    """An interferometric configuration (``interf_config``); scales in arcsec."""

    name: str
    array_tags: tuple[str, ...]
    clean_scales_arcsec: tuple[float, ...] = ()
    feather_config: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatherConfig:
    """A feathered configuration (``feather_config``) and the interferometric one it uses."""

    name: str
    interf_config: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Moment:
    """A moment definition of ``moment_key``."""

    name: str
    algorithm: str
    mask: str | None
    ext: str
    ext_error: str | None
    round: int = 1
    maps_to_pass: tuple[str, ...] = ()
    other_exts: dict[str, str] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DerivedSettings:
    """Derived-product settings of one (config, product) (``derived_key``).

    ``ang_res`` maps a resolution tag to arcsec, ``phys_res`` a tag to parsec.
    """

    ang_res: dict[str, float] = field(default_factory=dict)
    phys_res: dict[str, float] = field(default_factory=dict)
    mask_configs: tuple[str, ...] = ()
    moments: tuple[str, ...] = ()
    kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Combination:
    """One (target, config, product) the pipeline processes.

    ``kind`` is ``'interf'`` (stage + image), ``'feather'`` (feather with single dish) or
    ``'mosaic'`` (linear mosaic of the parts).
    """

    target: str
    config: str
    product: str
    kind: str

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.target, self.config, self.product)


@dataclass
class Project:
    """A validated PHANGS key set.  Build it with :func:`phangs_operators.keys.load_project`.

    All lists returned are sorted unless stated; unknown names raise :class:`KeyFileError`.
    """

    master_key: Path
    key_dir: Path
    key_files: list[Path]
    roots: dict[str, list[Path]]
    targets_by_name: dict[str, Target]
    dir_for_target: dict[str, str]
    mosaic_parts_by_name: dict[str, list[str]]
    ms_by_target: dict[str, list[MsEntry]]
    line_products_by_name: dict[str, LineProduct]
    cont_products_by_name: dict[str, ContProduct]
    interf_configs_by_name: dict[str, InterfConfig]
    feather_configs_by_name: dict[str, FeatherConfig]
    singledish_configs_by_name: dict[str, dict[str, Any]]
    array_tag_settings: dict[str, dict[str, Any]]
    recipes: dict[tuple[str, str, str], Path]
    clean_params_by_file: dict[Path, dict[str, Any]]
    singledish_files: dict[tuple[str, str], str]
    cleanmask_files: dict[tuple[str, str], str]
    distances_mpc: dict[str, float]
    windows: dict[str, tuple[str, str | None]]
    derived_settings: dict[tuple[str, str], DerivedSettings]
    moments_by_name: dict[str, Moment]
    override_entries: dict[str, dict[str, Any]]
    override_scope: dict[str, tuple[str, str | None, str | None]]
    warnings: list[KeyIssue] = field(default_factory=list)
    sha256: str = ""
    imaging_recipe_lines: int = 0
    unresolved_roots: dict[str, str] = field(default_factory=dict)
    _mosaic_of: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._mosaic_of = {p: m for m, parts in self.mosaic_parts_by_name.items() for p in parts}

    # ------------------------------------------------------------------ hash
    def keyset_hash(self) -> str:
        """sha256 (hex) over the bytes of the key files in read order (see :attr:`key_files`).

        Computed from the bytes read at load time, so it identifies exactly what was parsed.
        """
        if not self.sha256:
            h = hashlib.sha256()
            for path in self.key_files:
                h.update(path.read_bytes())
            self.sha256 = h.hexdigest()
        return self.sha256

    # --------------------------------------------------------------- targets
    def _check_target(self, target: str) -> Target:
        try:
            return self.targets_by_name[target]
        except KeyError:
            raise KeyFileError(f"target {target!r} is not defined in the target key") from None

    def targets(self) -> list[str]:
        """Every defined target (whole galaxies and mosaic parts)."""
        return sorted(self.targets_by_name)

    def target(self, name: str) -> Target:
        """The :class:`Target` record of ``name``."""
        return self._check_target(name)

    def whole_targets(self) -> list[str]:
        """Targets that are not mosaic parts (single-pointing galaxies and mosaics)."""
        return sorted((set(self.targets_by_name) | set(self.mosaic_parts_by_name)) - set(self._mosaic_of))

    def mosaics(self) -> list[str]:
        """Targets that are linear mosaics of parts."""
        return sorted(self.mosaic_parts_by_name)

    def mosaic_parts(self, mosaic: str | None = None) -> list[str]:
        """Parts of one mosaic (in key order), or all parts of all mosaics (sorted) when ``None``."""
        if mosaic is None:
            return sorted(self._mosaic_of)
        if mosaic not in self.mosaic_parts_by_name:
            raise KeyFileError(f"target {mosaic!r} is not a linear mosaic")
        return list(self.mosaic_parts_by_name[mosaic])

    def is_mosaic(self, target: str) -> bool:
        return target in self.mosaic_parts_by_name

    def mosaic_of(self, part: str) -> str | None:
        """The mosaic a part belongs to, or ``None``."""
        return self._mosaic_of.get(part)

    def non_mosaic_targets(self) -> list[str]:
        """Targets that are not themselves mosaics (parts included)."""
        return sorted(set(self.targets_by_name) - set(self.mosaic_parts_by_name))

    def phasecenter(self, target: str) -> str:
        """``'J2000 <ra> <dec>'`` of a target."""
        return self._check_target(target).phasecenter

    def vsys_vwidth(self, target: str, check_parent: bool = False) -> tuple[float, float]:
        """(vsys, vwidth) in km/s; ``check_parent`` uses the mosaic's values for a part."""
        if check_parent and target in self._mosaic_of and self._mosaic_of[target] in self.targets_by_name:
            target = self._mosaic_of[target]
        t = self._check_target(target)
        return (t.vsys_kms, t.vwidth_kms)

    # ----------------------------------------------------------- directories
    def working_dir(self, target: str) -> str:
        """Working directory name of a target (``dir_key``; default its own name)."""
        if target not in self.dir_for_target and target not in self.mosaic_parts_by_name:
            self._check_target(target)
        return self.dir_for_target.get(target, target)

    def working_dirs(self) -> list[str]:
        """Distinct working directory names."""
        return sorted({self.working_dir(t) for t in self.targets_by_name})

    def root(self, name: str) -> Path | None:
        """A single-valued root (``imaging_root`` ...), or ``None`` when unset."""
        paths = self.roots.get(name) or []
        return paths[-1] if paths else None

    def target_dir(self, root_name: str, target: str) -> Path:
        """``<root>/<working dir>`` of a target, e.g. ``target_dir('imaging_root', 'ngc3627_1')``."""
        root = self.require_roots(root_name)[root_name]
        return root / self.working_dir(target)

    def require_roots(self, *names: str, must_exist: bool = False) -> dict[str, Path]:
        """Return the named single-valued roots, raising :class:`KeyFileError` if unset/missing."""
        out: dict[str, Path] = {}
        missing: list[str] = []
        for name in names:
            path = self.root(name)
            if path is None and name in self.unresolved_roots:
                missing.append(self.unresolved_roots[name])
            elif path is None:
                missing.append(f"{name} is not set in {self.master_key}")
            elif must_exist and not path.is_dir():
                missing.append(f"{name} {path} does not exist")
            else:
                out[name] = path
        if missing:
            raise KeyFileError("; ".join(missing))
        return out

    # ------------------------------------------------------------- uv data
    def ms_entries(self, target: str | None = None, array_tag: str | None = None) -> list[MsEntry]:
        """Measurement-set entries, optionally of one target and/or array tag (key order)."""
        entries: Iterable[MsEntry]
        if target is None:
            entries = (e for t in sorted(self.ms_by_target) for e in self.ms_by_target[t])
        else:
            entries = self.ms_by_target.get(target, [])
        return [e for e in entries if array_tag is None or e.array_tag == array_tag]

    def targets_with_uvdata(self) -> list[str]:
        return sorted(t for t, e in self.ms_by_target.items() if e)

    def array_tags_for_target(self, target: str) -> list[str]:
        return sorted({e.array_tag for e in self.ms_by_target.get(target, [])})

    def has_data_for_config(self, target: str, config: str, strict: bool = True) -> bool:
        """Whether a target has MS for all (``strict``) or any array tag of an interf config."""
        tags = set(self.array_tags(config))
        have = set(self.array_tags_for_target(target))
        return tags <= have if strict else bool(tags & have)

    def ms_candidates(self, entry: MsEntry) -> list[Path]:
        """``<ms_root>/<filename>`` for every ``ms_root`` search path, in master-key order."""
        return [root / entry.filename for root in self.roots.get("ms_root", [])]

    def ms_path(self, entry: MsEntry) -> Path | None:
        """First existing candidate of :meth:`ms_candidates`, or ``None``."""
        for cand in self.ms_candidates(entry):
            if cand.exists():
                return cand
        return None

    def ms_for(self, target: str, array_tag: str) -> list[tuple[MsEntry, Path | None]]:
        """(entry, resolved path or None) for every MS of a target and array tag."""
        return [(e, self.ms_path(e)) for e in self.ms_entries(target, array_tag)]

    # --------------------------------------------------------------- configs
    def interf_configs(self) -> list[str]:
        return sorted(self.interf_configs_by_name)

    def feather_configs(self) -> list[str]:
        return sorted(self.feather_configs_by_name)

    def all_configs(self) -> list[str]:
        return self.interf_configs() + self.feather_configs()

    def interf_config(self, name: str) -> InterfConfig:
        try:
            return self.interf_configs_by_name[name]
        except KeyError:
            raise KeyFileError(f"interf config {name!r} is not defined") from None

    def feather_config(self, name: str) -> FeatherConfig:
        try:
            return self.feather_configs_by_name[name]
        except KeyError:
            raise KeyFileError(f"feather config {name!r} is not defined") from None

    def array_tags(self, config: str) -> list[str]:
        return list(self.interf_config(config).array_tags)

    def clean_scales_arcsec(self, config: str) -> list[float]:
        return list(self.interf_config(config).clean_scales_arcsec)

    def feather_config_for(self, interf_config: str) -> str | None:
        """The feather config built on an interf config, or ``None``."""
        return self.interf_config(interf_config).feather_config

    def interf_config_for(self, feather_config: str) -> str:
        return self.feather_config(feather_config).interf_config

    def timebin_for_array_tag(self, array_tag: str) -> str:
        """Time averaging at split for an array tag (``array_tag`` config; default ``'0s'``)."""
        return str(self.array_tag_settings.get(array_tag, {}).get("timebin", "0s"))

    def singledish_config(self, name: str = "tp") -> dict[str, Any]:
        return dict(self.singledish_configs_by_name.get(name, {}))

    # -------------------------------------------------------------- products
    def line_products(self) -> list[str]:
        return sorted(self.line_products_by_name)

    def cont_products(self) -> list[str]:
        return sorted(self.cont_products_by_name)

    def products(self) -> list[str]:
        return self.line_products() + self.cont_products()

    def is_line_product(self, product: str) -> bool:
        return product in self.line_products_by_name

    def line_product(self, name: str) -> LineProduct:
        try:
            return self.line_products_by_name[name]
        except KeyError:
            raise KeyFileError(f"line product {name!r} is not defined") from None

    def cont_product(self, name: str) -> ContProduct:
        try:
            return self.cont_products_by_name[name]
        except KeyError:
            raise KeyFileError(f"continuum product {name!r} is not defined") from None

    def _check_product(self, product: str) -> None:
        if product not in self.line_products_by_name and product not in self.cont_products_by_name:
            raise KeyFileError(f"product {product!r} is not defined")

    def line_flag_ranges_ghz(self, target: str, product: str) -> list[tuple[float, float]]:
        """Merged sky-frequency ranges (GHz) of a product's ``lines_to_flag`` for a target.

        Uses the target's (for a mosaic part: its mosaic's) vsys and vwidth, as contsub and
        continuum extraction do, so all parts of a mosaic flag the same window.
        """
        prod: LineProduct | ContProduct
        prod = self.line_products_by_name.get(product) or self.cont_product(product)
        vsys, vwidth = self.vsys_vwidth(target, check_parent=True)
        return _lines.get_ghz_ranges_for_lines(prod.lines_to_flag, vsys_kms=vsys, vwidth_kms=vwidth)

    # --------------------------------------------------------------- recipes
    def recipe_file(self, config: str, product: str, stage: str) -> Path:
        """The ``.clean`` recipe file of one (interf config, product, stage)."""
        try:
            return self.recipes[(config, product, stage)]
        except KeyError:
            raise KeyFileError(
                f"no imaging recipe for config {config!r} product {product!r} stage {stage!r}"
            ) from None

    def recipe_files(self, config: str, product: str) -> list[Path]:
        """Recipe files of the stages dirty, multiscale, singlescale (in that order)."""
        return [self.recipe_file(config, product, s) for s in IMAGING_STAGES]

    def clean_parameters(self, config: str, product: str, stage: str | None = None) -> dict[str, Any]:
        """tclean parameters of a recipe (a copy).

        With ``stage=None`` the three stage files are read in order into one dict (later files
        overwrite), as the original ``CleanCall`` does; otherwise only that stage's file.
        """
        files = self.recipe_files(config, product) if stage is None else [
            self.recipe_file(config, product, stage)
        ]
        out: dict[str, Any] = {}
        for f in files:
            out.update(self.clean_params_by_file[f])
        return out

    # ------------------------------------------------------------- overrides
    def overrides(self, target: str, config: str | None = None, product: str | None = None) -> dict[str, Any]:
        """Overrides that apply to (target, config, product), most specific last-applied.

        Lookup order (later wins): ``all``, ``target``, ``target_config``,
        ``target_config_product``.  Values are Python literals when they parse, else strings.
        """
        keys = ["all", target]
        if config:
            keys.append(f"{target}_{config}")
            if product:
                keys.append(f"{target}_{config}_{product}")
        out: dict[str, Any] = {}
        for k in keys:
            out.update(self.override_entries.get(k, {}))
        return out

    def override(
        self, param: str, target: str, config: str | None = None, product: str | None = None, default: Any = None
    ) -> Any:
        """One override value (see :meth:`overrides`) or ``default``."""
        return self.overrides(target, config, product).get(param, default)

    # --------------------------------------------------- single dish / masks
    def singledish_file(self, target: str, product: str) -> str | None:
        """Single-dish cube file name of the key (relative to a ``singledish_root``), or None."""
        return self.singledish_files.get((target, product))

    def has_singledish(self, target: str, product: str) -> bool:
        return (target, product) in self.singledish_files

    def _search(self, root_name: str, filename: str | None) -> Path | None:
        if filename is None:
            return None
        if os.path.isabs(filename):
            return Path(filename) if Path(filename).exists() else None
        found = None
        for root in self.roots.get(root_name, []):
            cand = root / filename
            if cand.exists():
                found = found or cand
        return found

    def singledish_path(self, target: str, product: str) -> Path | None:
        """Existing single-dish cube of (target, product) under the ``singledish_root`` paths."""
        return self._search("singledish_root", self.singledish_file(target, product))

    def cleanmask_file(self, target: str, product: str) -> str | None:
        """Clean-mask file name for (target, product) (a product ``all`` entry applies to all)."""
        return self.cleanmask_files.get((target, product), self.cleanmask_files.get((target, "all")))

    def cleanmask_path(self, target: str, product: str) -> Path | None:
        return self._search("cleanmask_root", self.cleanmask_file(target, product))

    # ------------------------------------------------------ distance, window
    def distance_mpc(self, target: str) -> float | None:
        """Distance in Mpc; a mosaic part without its own entry inherits its mosaic's."""
        if target in self.distances_mpc:
            return self.distances_mpc[target]
        parent = self._mosaic_of.get(target)
        return self.distances_mpc.get(parent) if parent else None

    def _window(self, target: str) -> tuple[str, str | None] | None:
        if target in self.windows:
            return self.windows[target]
        parent = self._mosaic_of.get(target)
        return self.windows.get(parent) if parent else None

    def velocity_window(self, target: str) -> str | None:
        """Velocity window for flat masks as a CASA-style string, e.g. ``'40.0km/s'``."""
        w = self._window(target)
        return f"{w[0]}km/s" if w else None

    def velocity_window_kms(self, target: str) -> float | None:
        w = self._window(target)
        return float(w[0]) if w else None

    def vfield_file(self, target: str) -> str | None:
        w = self._window(target)
        return w[1] if w else None

    # --------------------------------------------------------------- derived
    def derived(self, config: str, product: str) -> DerivedSettings:
        """Derived-product settings of (config, product) (empty settings when none)."""
        if config not in self.interf_configs_by_name and config not in self.feather_configs_by_name:
            raise KeyFileError(f"config {config!r} is not defined")
        self._check_product(product)
        return self.derived_settings.get((config, product), DerivedSettings())

    def ang_res(self, config: str, product: str) -> dict[str, float]:
        return dict(self.derived(config, product).ang_res)

    def phys_res(self, config: str, product: str) -> dict[str, float]:
        return dict(self.derived(config, product).phys_res)

    def mask_configs(self, config: str, product: str) -> list[str]:
        return list(self.derived(config, product).mask_configs)

    def moment_list(self, config: str, product: str) -> list[str]:
        return list(self.derived(config, product).moments)

    def derived_kwargs(self, config: str, product: str, kind: str) -> dict[str, Any]:
        """A copy of one kw dict (``noise_kw``, ``strictmask_kw`` ...)."""
        if kind not in DERIVED_KW_FIELDS:
            raise KeyFileError(f"unknown derived keyword set {kind!r}; expected one of {DERIVED_KW_FIELDS}")
        return dict(self.derived(config, product).kwargs.get(kind, {}))

    def moments(self) -> list[str]:
        return sorted(self.moments_by_name)

    def moment(self, name: str) -> Moment:
        try:
            return self.moments_by_name[name]
        except KeyError:
            raise KeyFileError(f"moment {name!r} is not defined in the moment key") from None

    # ----------------------------------------------------------- workflow
    def imaging_combinations(
        self,
        targets: Iterable[str] | None = None,
        configs: Iterable[str] | None = None,
        products: Iterable[str] | None = None,
    ) -> list[Combination]:
        """(target, interf config, product) the staging/imaging loops run (``strict_config``).

        An interf config runs for a target only if the target has MS for all its array tags.
        """
        tlist = sorted(targets) if targets is not None else self.targets()
        clist = [c for c in (configs if configs is not None else self.interf_configs())
                 if c in self.interf_configs_by_name]
        plist = list(products) if products is not None else self.products()
        out = []
        for t in tlist:
            for c in clist:
                if not self.has_data_for_config(t, c, strict=True):
                    continue
                out.extend(Combination(t, c, p, "interf") for p in plist)
        return out

    def feather_combinations(
        self,
        targets: Iterable[str] | None = None,
        configs: Iterable[str] | None = None,
        products: Iterable[str] | None = None,
    ) -> list[Combination]:
        """(target, feather config, product): its interf config runs and a single-dish cube exists."""
        wanted = set(configs) if configs is not None else set(self.feather_configs())
        fc_for = {f.interf_config: f.name for f in self.feather_configs_by_name.values() if f.name in wanted}
        out = []
        for comb in self.imaging_combinations(targets, list(fc_for), products):
            if self.has_singledish(comb.target, comb.product):
                out.append(Combination(comb.target, fc_for[comb.config], comb.product, "feather"))
        return out

    def mosaic_combinations(
        self,
        mosaics: Iterable[str] | None = None,
        configs: Iterable[str] | None = None,
        products: Iterable[str] | None = None,
    ) -> list[Combination]:
        """(mosaic, config, product) a linear-mosaic step can build from its parts.

        An interf config qualifies when at least one part is imaged in it (see
        :meth:`imaging_combinations`); a feather config when at least one part is imaged in
        its interf config and at least one part has a single-dish cube for the product
        (PHANGS mosaics the parts' interferometric and single-dish cubes, then feathers).
        ``kind`` is ``'mosaic'``.
        """
        mlist = sorted(mosaics) if mosaics is not None else self.mosaics()
        wanted = set(configs) if configs is not None else set(self.all_configs())
        plist = list(products) if products is not None else self.products()
        out = []
        for m in mlist:
            parts = self.mosaic_parts(m)
            imaged = {(c.config, c.product) for c in self.imaging_combinations(parts, None, plist)}
            for c in self.all_configs():
                if c not in wanted:
                    continue
                interf = c if c in self.interf_configs_by_name else self.interf_config_for(c)
                for p in plist:
                    if (interf, p) not in imaged:
                        continue
                    if c != interf and not any(self.has_singledish(part, p) for part in parts):
                        continue
                    out.append(Combination(m, c, p, "mosaic"))
        return out

    def pipeline_combinations(
        self,
        targets: Iterable[str] | None = None,
        configs: Iterable[str] | None = None,
        products: Iterable[str] | None = None,
    ) -> list[Combination]:
        """Interf then feather combinations (see the two methods)."""
        tl = list(targets) if targets is not None else None
        cl = list(configs) if configs is not None else None
        pl = list(products) if products is not None else None
        return self.imaging_combinations(tl, cl, pl) + self.feather_combinations(tl, cl, pl)

    # ------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """Counts and names of the key set (the fields of ``phangs keys check --json``)."""
        by_array: dict[str, int] = {}
        n_ms = 0
        for entries in self.ms_by_target.values():
            for e in entries:
                by_array[e.array_tag] = by_array.get(e.array_tag, 0) + 1
                n_ms += 1
        return {
            "master_key": str(self.master_key),
            "keyset_hash": self.keyset_hash(),
            "targets": len(self.targets_by_name),
            "whole_targets": len(self.whole_targets()),
            "mosaics": len(self.mosaic_parts_by_name),
            "mosaic_parts": len(self._mosaic_of),
            "working_dirs": len(self.working_dirs()),
            "targets_with_uvdata": len(self.targets_with_uvdata()),
            "ms_entries": n_ms,
            "ms_entries_by_array": dict(sorted(by_array.items())),
            "interf_configs": self.interf_configs(),
            "feather_configs": self.feather_configs(),
            "line_products": self.line_products(),
            "cont_products": self.cont_products(),
            "imaging_recipe_lines": self.imaging_recipe_lines,
            "recipe_files": len(set(self.recipes.values())),
            "singledish_entries": len(self.singledish_files),
            "cleanmask_entries": len(self.cleanmask_files),
            "distances": len(self.distances_mpc),
            "windows": len(self.windows),
            "moments": len(self.moments_by_name),
            "override_entries": len(self.override_entries),
            "imaging_combinations": len(self.imaging_combinations()),
            "feather_combinations": len(self.feather_combinations()),
            "mosaic_combinations": len(self.mosaic_combinations()),
        }
