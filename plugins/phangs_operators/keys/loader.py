"""Load and validate a whole PHANGS key set into a :class:`~phangs_operators.keys.model.Project`."""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import lines as _lines
from phangs_operators.keys.issues import IssueLog, KeyIssue, raise_for_errors
from phangs_operators.keys.model import (
    DERIVED_KW_FIELDS,
    IMAGING_STAGES,
    MULTI_ROOTS,
    SINGLE_ROOTS,
    ContProduct,
    DerivedSettings,
    FeatherConfig,
    InterfConfig,
    LineProduct,
    Moment,
    MsEntry,
    Project,
    Target,
)
from phangs_operators.keys.parser import (
    decode_key_bytes,
    iter_csv_rows,
    iter_rows,
    parse_clean_text,
    parse_literal,
)

logger = logging.getLogger(__name__)

MASTER_KEY_NAME = "master_key.txt"

#: master-key kinds naming key files, in the order they are parsed (dependencies first)
KEY_FILE_KINDS: tuple[str, ...] = (
    "target_key",
    "linmos_key",
    "dir_key",
    "config_key",
    "ms_key",
    "moment_key",
    "imaging_key",
    "derived_key",
    "singledish_key",
    "cleanmask_key",
    "distance_key",
    "window_key",
    "override_key",
    "casaversion_key",
    "alma_download_key",
)
REQUIRED_KEY_KINDS: tuple[str, ...] = ("target_key", "config_key", "imaging_key")

# ----------------------------------------------------------------------------- value checks
# A checker returns None when the value is acceptable, else a description of what was expected.
Checker = Callable[[Any], str | None]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _float(v: Any) -> str | None:
    if isinstance(v, float):
        return None
    if _is_num(v):
        return f"a float (write {v}.0, not {v})"
    return "a float such as 2.6"


def _number(v: Any) -> str | None:
    return None if _is_num(v) else "a number"


def _int(v: Any) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) else "an integer such as 0"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "True or False"


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) else "a quoted string"


def _list_str(v: Any) -> str | None:
    ok = isinstance(v, list | tuple) and all(isinstance(x, str) for x in v)
    return None if ok else "a list of quoted strings such as ['12m','7m']"


def _list_num(v: Any) -> str | None:
    ok = isinstance(v, list | tuple) and all(_is_num(x) for x in v)
    return None if ok else "a list of numbers such as [0,1,2.5]"


def _list_any(v: Any) -> str | None:
    return None if isinstance(v, list | tuple) else "a list"


def _pairs(v: Any) -> str | None:
    ok = isinstance(v, list | tuple) and all(
        isinstance(p, list | tuple) and len(p) == 2 and all(_is_num(x) for x in p) and p[0] < p[1]
        for p in v
    )
    return None if ok else "a list of [low, high] number pairs with low < high, e.g. [[214.87,216.83]]"


def _dirs(v: Any) -> str | None:
    return None if v is None or isinstance(v, str | list | tuple) else "None, a string or a list"


_RES_PARAMS: dict[str, Checker] = {
    "res_min_arcsec": _number,
    "res_max_arcsec": _number,
    "res_min_pc": _number,
    "res_max_pc": _number,
    "res_step_factor": _number,
    "res_list": _list_num,
}

CONFIG_PARAMS: dict[str, dict[str, Checker]] = {
    "line_product": {
        "line_tag": _str,
        "channel_kms": _float,
        "statwt_edge_kms": _float,
        "fitorder": _int,
        "combinespw": _bool,
        "lines_to_flag": _list_str,
        "exclude_freq_ranges_ghz": _pairs,
        "flag_edge_fraction": _float,
    },
    "cont_product": {"freq_ranges_ghz": _pairs, "channel_ghz": _float, "lines_to_flag": _list_str},
    "interf_config": {"array_tags": _list_str, "clean_scales_arcsec": _list_num, **_RES_PARAMS},
    "feather_config": {"interf_config": _str, **_RES_PARAMS},
    "singledish_config": {
        "bl_order": _int,
        "chan_dv_kms": _float,
        "line_wing_kms": _float,
        "vwidth_kms": _float,
        "vel_line": _str,
        "vel_cube": _str,
        "do_step": _list_any,
        "joint_imaging_dirs": _dirs,
        "joint_imaging_suffix": _str,
        "doplots": _bool,
    },
    "array_tag": {"timebin": _str},
}
_CONFIG_NAMESPACE = {
    "line_product": "product",
    "cont_product": "product",
    "interf_config": "config",
    "feather_config": "config",
    "singledish_config": "singledish_config",
    "array_tag": "array_tag",
}

MOMENT_PARAMS: dict[str, str] = {
    "algorithm": "word",
    "mask": "word_or_none",
    "ext": "word",
    "ext_error": "word_or_none",
    "round": "int",
    "maps_to_pass": "list",
    "other_exts": "dict",
    "kwargs": "dict",
}

DERIVED_FIELDS: tuple[str, ...] = ("phys_res", "ang_res", "mask_configs", "moments", *DERIVED_KW_FIELDS)

_RA = re.compile(
    r"^(\d{1,2}h\d{1,2}m\d{1,2}(\.\d*)?s?|\d{1,2}:\d{1,2}:\d{1,2}(\.\d*)?|\d+(\.\d*)?deg|\d+(\.\d*)?)$"
)
_DEC = re.compile(
    r"^[+-]?(\d{1,2}d\d{1,2}m\d{1,2}(\.\d*)?s?|\d{1,2}[.:]\d{1,2}[.:]\d{1,2}(\.\d*)?|\d+(\.\d*)?deg|\d+(\.\d*)?)$"
)
_ENV = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass
class _Loc:
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class _ConfigEntry:
    kind: str
    name: str
    loc: _Loc
    params: dict[str, Any] = field(default_factory=dict)
    param_loc: dict[str, _Loc] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)


def _fmt_choices(choices) -> str:
    return ", ".join(sorted(choices))


class _Loader:
    """One load of one key set; collects every error before raising."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path).expanduser()
        self.master = (p / MASTER_KEY_NAME) if p.is_dir() else p
        self.master = Path(os.path.abspath(self.master))
        self.master_dir = self.master.parent
        self.log = IssueLog()
        self.read_files: list[Path] = []
        self.sha = hashlib.sha256()
        self.texts: dict[Path, str | None] = {}
        self.roots: dict[str, list[Path]] = {}
        self.key_dir: Path = self.master_dir
        self.root_line: dict[Path, int] = {}
        self.unresolved: dict[str, str] = {}
        self.recipe_lines = 0
        self.key_lists: dict[str, list[tuple[Path, _Loc]]] = {k: [] for k in KEY_FILE_KINDS}
        # parsed state
        self.targets: dict[str, Target] = {}
        self.mosaics: dict[str, list[str]] = {}
        self.part_loc: dict[str, tuple[str, _Loc]] = {}
        self.dirs: dict[str, str] = {}
        self.dir_loc: dict[str, _Loc] = {}
        self.config_entries: dict[tuple[str, str], _ConfigEntry] = {}
        self.namespace_owner: dict[tuple[str, str], _ConfigEntry] = {}
        self.line_products: dict[str, LineProduct] = {}
        self.cont_products: dict[str, ContProduct] = {}
        self.interf: dict[str, InterfConfig] = {}
        self.feather: dict[str, FeatherConfig] = {}
        self.sd_configs: dict[str, dict[str, Any]] = {}
        self.array_tags: dict[str, dict[str, Any]] = {}
        self.product_loc: dict[str, _Loc] = {}
        self.ms: dict[str, list[MsEntry]] = {}
        self.moments: dict[str, Moment] = {}
        self.recipes: dict[tuple[str, str, str], Path] = {}
        self.recipe_loc: dict[tuple[str, str, str], _Loc] = {}
        self.clean_params: dict[Path, dict[str, Any]] = {}
        self.derived: dict[tuple[str, str], dict[str, Any]] = {}
        self.sd_files: dict[tuple[str, str], str] = {}
        self.mask_files: dict[tuple[str, str], str] = {}
        self.distances: dict[str, float] = {}
        self.windows: dict[str, tuple[str, str | None]] = {}
        self.overrides: dict[str, dict[str, Any]] = {}
        self.override_scope: dict[str, tuple[str, str | None, str | None]] = {}
        self.casaversions: dict[str, str] = {}
        self.download: dict[tuple[str, str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ utils
    def err(self, loc: _Loc | Path, line: int | None, msg: str) -> None:
        if isinstance(loc, _Loc):
            self.log.error(loc.file, loc.line, msg)
        else:
            self.log.error(loc, line or 0, msg)

    def read(self, path: Path, origin: _Loc | None, what: str) -> str | None:
        """Read and decode one file (once), recording it for the key-set hash."""
        if path in self.texts:
            return self.texts[path]
        if not path.is_file():
            where = origin if origin else _Loc(path, 0)
            self.err(where, None, f"missing key file: {what} {path} does not exist (or is not a file)")
            self.texts[path] = None
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            self.err(origin or _Loc(path, 0), None, f"missing key file: cannot read {what} {path}: {exc}")
            self.texts[path] = None
            return None
        self.read_files.append(path)
        self.sha.update(data)
        text = decode_key_bytes(data, path, self.log)
        self.texts[path] = text
        return text

    @staticmethod
    def missing_env(value: str) -> str | None:
        """First environment variable used in ``value`` that is not set, or None."""
        missing = [a or b for a, b in _ENV.findall(value) if (a or b) not in os.environ]
        return missing[0] if missing else None

    def expand_path(self, value: str, base: Path, loc: _Loc) -> Path | None:
        """``${VAR}``/``$VAR``/``~`` expansion; relative paths are taken relative to ``base``."""
        missing = self.missing_env(value)
        if missing:
            self.err(loc, None, f"environment variable {missing} used in {value!r} is not set")
            return None
        expanded = os.path.expanduser(_ENV.sub(lambda m: os.environ[m.group(1) or m.group(2)], value))
        p = Path(expanded)
        if not p.is_absolute():
            p = base / p
        return Path(os.path.normpath(p))

    # ------------------------------------------------------------ master key
    def read_master(self) -> None:
        if not self.master.is_file():
            raise_for_errors(
                [KeyIssue(str(self.master), 0, "missing key file: master key not found")], str(self.master)
            )
        text = self.read(self.master, None, "master key")
        if text is None:
            return
        known = ("key_dir", *SINGLE_ROOTS, *MULTI_ROOTS, *KEY_FILE_KINDS)
        key_dir_loc = None
        pending_keys: list[tuple[str, str, _Loc]] = []
        for lineno, (kind, value) in iter_rows(self.master, text, 2, "key value", self.log):
            loc = _Loc(self.master, lineno)
            if kind not in known:
                self.err(loc, None, f"unknown key kind {kind!r} in the master key; expected one of "
                         f"{_fmt_choices(known)}")
                continue
            if kind in KEY_FILE_KINDS:
                pending_keys.append((kind, value, loc))
                continue
            missing = self.missing_env(value)
            if missing and kind != "key_dir":
                # an unresolvable data root is like a missing one: a warning now, an error when needed
                why = f"{kind} {value!r} cannot be resolved: environment variable {missing} is not set"
                self.log.warn(self.master, lineno, why)
                self.unresolved[kind] = why
                continue
            path = self.expand_path(value, self.master_dir, loc)
            if path is None:
                continue
            if kind == "key_dir" or kind in SINGLE_ROOTS:
                if self.roots.get(kind):
                    self.log.warn(self.master, lineno, f"{kind} given again; {path} replaces {self.roots[kind][0]}")
                self.roots[kind] = [path]
                if kind == "key_dir":
                    key_dir_loc = loc
            else:
                self.roots.setdefault(kind, []).append(path)
            self.root_line[path] = lineno
        if "key_dir" in self.roots:
            kd = self.roots.pop("key_dir")[0]
            if kd.is_dir():
                self.key_dir = kd
            else:
                self.log.warn(self.master, key_dir_loc.line if key_dir_loc else 0,
                              f"key_dir {kd} does not exist; reading key files from the master key's "
                              f"directory {self.master_dir}")
        for kind, value, loc in pending_keys:
            path = self.expand_path(value, self.key_dir, loc)
            if path is not None:
                self.key_lists[kind].append((path, loc))
        for kind in REQUIRED_KEY_KINDS:
            if not self.key_lists[kind]:
                self.err(self.master, 0, f"missing key file: the master key lists no {kind}; expected a line "
                         f"'{kind} <file>'")
        for name in SINGLE_ROOTS:
            if not self.roots.get(name) and name not in self.unresolved:
                self.log.warn(self.master, 0, f"{name} is not set; a pipeline run will need it")
        if not self.roots.get("ms_root") and "ms_root" not in self.unresolved:
            self.log.warn(self.master, 0, "no ms_root is set; measurement sets cannot be found")
        for name, paths in self.roots.items():
            for p in paths:
                if not p.is_dir():
                    self.log.warn(self.master, self.root_line.get(p, 0), f"data root {name} {p} does not exist")

    def files_of(self, kind: str):
        """(path, text) of every file listed for a kind, in master-key order (missing ones skipped)."""
        done: set[Path] = set()
        for path, loc in self.key_lists[kind]:
            if path in done:
                self.log.warn(loc.file, loc.line, f"{kind} {path} is listed twice; read once")
                continue
            done.add(path)
            text = self.read(path, loc, kind)
            if text is not None:
                if not text.strip():
                    self.log.warn(path, 0, f"{kind} file is empty")
                yield path, text

    # -------------------------------------------------------------- targets
    def read_targets(self) -> None:
        first: dict[str, _Loc] = {}
        for path, text in self.files_of("target_key"):
            for lineno, (name, ra, dec, vsys, vwidth) in iter_rows(
                path, text, 5, "target ra dec vsys_kms vwidth_kms", self.log
            ):
                loc = _Loc(path, lineno)
                ok = True
                if not _RA.match(ra):
                    self.err(loc, None, f"wrong value type: RA {ra!r} of target {name!r}; expected "
                             "sexagesimal like 01h36m41.7s or decimal degrees")
                    ok = False
                if not _DEC.match(dec):
                    self.err(loc, None, f"wrong value type: Dec {dec!r} of target {name!r}; expected "
                             "sexagesimal like +15d47m01s or decimal degrees")
                    ok = False
                v = self._floats(loc, name, {"vsys_kms": vsys, "vwidth_kms": vwidth})
                if v is None:
                    continue
                if v["vwidth_kms"] <= 0:
                    self.err(loc, None, f"wrong value: vwidth_kms of target {name!r} is {vwidth}; expected > 0")
                    ok = False
                if name in first:
                    self.err(loc, None, f"duplicate definition of target {name!r} (first defined at {first[name]})")
                    continue
                first[name] = loc
                if ok:
                    self.targets[name] = Target(name, ra, dec, v["vsys_kms"], v["vwidth_kms"], str(path), lineno)
        if not first and self.key_lists["target_key"]:
            path, loc = self.key_lists["target_key"][0]
            self.err(path, 0, "no targets defined; expected lines 'target ra dec vsys_kms vwidth_kms'")
        self.target_loc = first

    def _floats(self, loc: _Loc, what: str, values: dict[str, str]) -> dict[str, float] | None:
        out = {}
        for k, s in values.items():
            try:
                out[k] = float(s)
            except ValueError:
                self.err(loc, None, f"wrong value type: {k} of {what!r} is {s!r}; expected a number")
                return None
        return out

    def known_target(self, name: str) -> bool:
        return name in getattr(self, "target_loc", {})

    def undefined_target(self, loc: _Loc, name: str, key: str) -> None:
        self.err(loc, None, f"undefined target {name!r} in the {key}; expected a target defined in the "
                 "target key")

    # ---------------------------------------------------------- linmos, dirs
    def read_linmos(self) -> None:
        seen: dict[tuple[str, str], _Loc] = {}
        for path, text in self.files_of("linmos_key"):
            for lineno, (mosaic, part) in iter_rows(path, text, 2, "mosaic_name part_name", self.log):
                loc = _Loc(path, lineno)
                if not self.known_target(mosaic):
                    self.undefined_target(loc, mosaic, "linear mosaic key (mosaic name)")
                    continue
                if not self.known_target(part):
                    self.err(loc, None, f"mosaic part without definition: part {part!r} of mosaic {mosaic!r} "
                             "is not defined in the target key; expected a target_definitions line for it")
                    continue
                if part == mosaic:
                    self.err(loc, None, f"mosaic {mosaic!r} lists itself as a part")
                    continue
                if (mosaic, part) in seen:
                    self.err(loc, None, f"duplicate definition of mosaic part {part!r} of {mosaic!r} "
                             f"(first at {seen[(mosaic, part)]})")
                    continue
                if part in self.part_loc:
                    other, oloc = self.part_loc[part]
                    self.err(loc, None, f"duplicate definition: part {part!r} already belongs to mosaic "
                             f"{other!r} ({oloc}); a part can be in one mosaic only")
                    continue
                seen[(mosaic, part)] = loc
                self.part_loc[part] = (mosaic, loc)
                self.mosaics.setdefault(mosaic, []).append(part)
        for mosaic in list(self.mosaics):
            if mosaic in self.part_loc:
                _, loc = self.part_loc[mosaic]
                self.err(loc, None, f"mosaic {mosaic!r} is itself a part of another mosaic; nested mosaics "
                         "are not supported")

    def read_dirs(self) -> None:
        for path, text in self.files_of("dir_key"):
            for lineno, (target, wdir) in iter_rows(path, text, 2, "target working_dir", self.log):
                loc = _Loc(path, lineno)
                if not self.known_target(target):
                    self.undefined_target(loc, target, "directory key")
                    continue
                if os.path.isabs(wdir) or ".." in Path(wdir).parts:
                    self.err(loc, None, f"wrong value: working dir {wdir!r}; expected a directory name "
                             "relative to the roots")
                    continue
                if target in self.dir_loc:
                    self.err(loc, None, f"duplicate definition of the working dir of {target!r} "
                             f"(first at {self.dir_loc[target]})")
                    continue
                self.dir_loc[target] = loc
                self.dirs[target] = wdir

    # --------------------------------------------------------------- configs
    def read_configs(self) -> None:
        for path, text in self.files_of("config_key"):
            for lineno, (kind, name, value) in iter_rows(
                path, text, 3, "type name {dict}", self.log, rest_is_value=True
            ):
                loc = _Loc(path, lineno)
                if kind not in CONFIG_PARAMS:
                    self.err(loc, None, f"unknown key kind {kind!r} in the config key; expected one of "
                             f"{_fmt_choices(CONFIG_PARAMS)}")
                    continue
                ok, params = parse_literal(value, path, lineno, self.log, "a dict such as {'channel_kms':2.6}")
                if not ok:
                    continue
                if not isinstance(params, dict):
                    self.err(loc, None, f"wrong value type: expected a dict literal for {kind} {name!r}, got "
                             f"{type(params).__name__}")
                    continue
                ns = (_CONFIG_NAMESPACE[kind], name)
                owner = self.namespace_owner.get(ns)
                if owner is not None and owner.kind != kind:
                    self.err(loc, None, f"duplicate definition: {name!r} is already defined as {owner.kind} at "
                             f"{owner.loc}")
                    continue
                entry = self.config_entries.setdefault((kind, name), _ConfigEntry(kind, name, loc))
                self.namespace_owner[ns] = entry
                spec = CONFIG_PARAMS[kind]
                for pname, pval in params.items():
                    if pname not in spec:
                        self.err(loc, None, f"unknown parameter {pname!r} for {kind} {name!r}; expected one of "
                                 f"{_fmt_choices(spec)}")
                        continue
                    problem = spec[pname](pval)
                    if problem:
                        entry.rejected.add(pname)
                        self.err(loc, None, f"wrong value type: {pname!r} of {kind} {name!r} is {pval!r}; "
                                 f"expected {problem}")
                        continue
                    if pname in entry.params and entry.params[pname] != pval:
                        self.err(loc, None, f"duplicate definition of {pname!r} for {kind} {name!r} (first set "
                                 f"to {entry.params[pname]!r} at {entry.param_loc[pname]})")
                        continue
                    entry.params[pname] = pval
                    entry.param_loc.setdefault(pname, loc)
        self._build_configs()

    def _build_configs(self) -> None:
        def need(e: _ConfigEntry, pname: str, what: str) -> bool:
            if pname in e.params:
                return True
            if pname in e.rejected:  # already reported with its line
                return False
            self.err(e.loc, None, f"{e.kind} {e.name!r} has no {pname!r}; expected {what}")
            return False

        def check_lines(e: _ConfigEntry) -> bool:
            bad = [x for x in e.params.get("lines_to_flag", []) if not (
                _lines.is_known_line(x) or _lines.is_line_family(x))]
            if bad:
                loc = e.param_loc["lines_to_flag"]
                self.err(loc, None, f"unknown line {bad[0]!r} in lines_to_flag of {e.kind} {e.name!r}; expected "
                         f"a line ({_fmt_choices(_lines.LINE_REST_FREQUENCIES_GHZ)}) or a family "
                         f"({_fmt_choices(_lines.LINE_FAMILIES)})")
            return not bad

        for (kind, name), e in self.config_entries.items():
            p = e.params
            if kind == "line_product":
                ok = need(e, "line_tag", "e.g. {'line_tag':'co21'}")
                ok = need(e, "channel_kms", "e.g. {'channel_kms':2.6}") and ok
                if "line_tag" in p and not _lines.is_known_line(p["line_tag"]):
                    self.err(e.param_loc["line_tag"], None, f"unknown line tag {p['line_tag']!r} of line_product "
                             f"{name!r}; expected one of {_fmt_choices(_lines.LINE_REST_FREQUENCIES_GHZ)}")
                    ok = False
                if "channel_kms" in p and p["channel_kms"] <= 0:
                    self.err(e.param_loc["channel_kms"], None, f"wrong value: channel_kms of {name!r} must be > 0")
                    ok = False
                ok = check_lines(e) and ok
                self.product_loc[name] = e.loc
                if ok:
                    self.line_products[name] = LineProduct(
                        name=name,
                        line_tag=_lines.normalise_line_name(p["line_tag"]),
                        channel_kms=p["channel_kms"],
                        statwt_edge_kms=p.get("statwt_edge_kms", 50.0),
                        fitorder=p.get("fitorder", 0),
                        combinespw=p.get("combinespw", False),
                        lines_to_flag=tuple(p.get("lines_to_flag", ())),
                        exclude_freq_ranges_ghz=tuple(tuple(x) for x in p.get("exclude_freq_ranges_ghz", ())),
                        flag_edge_fraction=p.get("flag_edge_fraction", 0.0),
                    )
            elif kind == "cont_product":
                self.product_loc[name] = e.loc
                if check_lines(e):
                    self.cont_products[name] = ContProduct(
                        name=name,
                        freq_ranges_ghz=tuple(tuple(x) for x in p.get("freq_ranges_ghz", ())),
                        channel_ghz=p.get("channel_ghz", 0.0),
                        lines_to_flag=tuple(p.get("lines_to_flag", ())),
                    )
            elif kind == "interf_config":
                if need(e, "array_tags", "e.g. {'array_tags':['12m','7m']}"):
                    if not p["array_tags"]:
                        self.err(e.param_loc["array_tags"], None, f"interf_config {name!r} has an empty "
                                 "array_tags list; expected at least one array tag")
                        continue
                    self.interf[name] = InterfConfig(
                        name=name,
                        array_tags=tuple(p["array_tags"]),
                        clean_scales_arcsec=tuple(p.get("clean_scales_arcsec", ())),
                        extra={k: v for k, v in p.items() if k in _RES_PARAMS},
                    )
            elif kind == "singledish_config":
                self.sd_configs[name] = dict(p)
            elif kind == "array_tag":
                self.array_tags[name] = dict(p)
        feather_of: dict[str, _ConfigEntry] = {}
        for (kind, name), e in self.config_entries.items():
            if kind != "feather_config" or not need(e, "interf_config", "e.g. {'interf_config':'12m+7m'}"):
                continue
            ic = e.params["interf_config"]
            loc = e.param_loc["interf_config"]
            if ic not in self.interf:
                if ("interf_config", ic) not in self.config_entries:
                    self.err(loc, None, f"undefined config {ic!r} referenced by feather_config {name!r}; expected "
                             f"one of the interf configs ({_fmt_choices(self.interf)})")
                continue
            if ic in feather_of:
                self.err(loc, None, f"duplicate definition: interf config {ic!r} already has feather config "
                         f"{feather_of[ic].name!r} ({feather_of[ic].loc})")
                continue
            feather_of[ic] = e
            self.feather[name] = FeatherConfig(name, ic, {k: v for k, v in e.params.items() if k in _RES_PARAMS})
        for ic, e in feather_of.items():
            if ic in self.interf:
                old = self.interf[ic]
                self.interf[ic] = InterfConfig(old.name, old.array_tags, old.clean_scales_arcsec, e.name, old.extra)
        if self.key_lists["config_key"] and not any(k[0] == "interf_config" for k in self.config_entries):
            self.err(self.key_lists["config_key"][0][0], 0, "no interf_config defined; expected e.g. "
                     "'interf_config 12m {'array_tags':['12m']}'")
        if self.key_lists["config_key"] and not any(k[0] in ("line_product", "cont_product")
                                                     for k in self.config_entries):
            self.err(self.key_lists["config_key"][0][0], 0, "no line_product or cont_product defined")

    def all_config_names(self) -> set[str]:
        return {n for (k, n) in self.config_entries if k in ("interf_config", "feather_config")}

    def all_product_names(self) -> set[str]:
        return {n for (k, n) in self.config_entries if k in ("line_product", "cont_product")}

    def products_for(self, token: str) -> list[str] | None:
        lines_ = sorted(n for (k, n) in self.config_entries if k == "line_product")
        conts = sorted(n for (k, n) in self.config_entries if k == "cont_product")
        if token == "all":
            return lines_ + conts
        if token == "all_line":
            return lines_
        if token == "all_cont":
            return conts
        return [token] if token in self.all_product_names() else None

    # ---------------------------------------------------------------- ms key
    def read_ms(self) -> None:
        seen: dict[tuple[str, str, str, str], _Loc] = {}
        used_tags = {t for e in self.config_entries.values() if e.kind == "interf_config"
                     for t in e.params.get("array_tags", [])}
        warned: set[str] = set()
        for path, text in self.files_of("ms_key"):
            for lineno, (target, project, fld, tag, obsnum, fname) in iter_rows(
                path, text, 6, "target project_tag science_field array_tag obsnum filename", self.log
            ):
                loc = _Loc(path, lineno)
                if not self.known_target(target):
                    self.undefined_target(loc, target, "ms key")
                    continue
                k = (target, project, tag, obsnum)
                if k in seen:
                    self.err(loc, None, f"duplicate definition of MS {target} {project} {tag} obsnum {obsnum} "
                             f"(first at {seen[k]})")
                    continue
                seen[k] = loc
                if tag not in used_tags and tag not in self.sd_configs and tag not in warned:
                    warned.add(tag)
                    self.log.warn(path, lineno, f"array tag {tag!r} is used by no interf_config "
                                  "or singledish_config")
                self.ms.setdefault(target, []).append(
                    MsEntry(target, project, fld, tag, obsnum, fname, str(path), lineno))

    # ------------------------------------------------------------ moment key
    def read_moments(self) -> None:
        raw: dict[str, dict[str, Any]] = {}
        first: dict[str, _Loc] = {}
        ploc: dict[tuple[str, str], _Loc] = {}
        for path, text in self.files_of("moment_key"):
            for lineno, (name, param, value) in iter_rows(
                path, text, 3, "moment_name param value", self.log, rest_is_value=True
            ):
                loc = _Loc(path, lineno)
                if param not in MOMENT_PARAMS:
                    self.err(loc, None, f"unknown moment parameter {param!r} for moment {name!r}; expected one of "
                             f"{_fmt_choices(MOMENT_PARAMS)}")
                    continue
                kind = MOMENT_PARAMS[param]
                parsed: Any
                if kind in ("word", "word_or_none"):
                    if value[:1] in "'\"":
                        ok, parsed = parse_literal(value, path, lineno, self.log, "a quoted string")
                        if not ok:
                            continue
                        if not isinstance(parsed, str):
                            self.err(loc, None, f"wrong value type: {param} of moment {name!r}; expected a word")
                            continue
                    elif len(value.split()) != 1:
                        self.err(loc, None, f"wrong column count: expected 3 columns (moment_name param value), "
                                 f"found {2 + len(value.split())}")
                        continue
                    else:
                        parsed = value
                    if parsed == "None":
                        if kind == "word":
                            self.err(loc, None, f"wrong value type: {param} of moment {name!r} is None; expected "
                                     "a name")
                            continue
                        parsed = None
                elif kind == "int":
                    try:
                        parsed = int(value)
                    except ValueError:
                        self.err(loc, None, f"wrong value type: round of moment {name!r} is {value!r}; expected an "
                                 "integer (1, 2 or 3)")
                        continue
                else:
                    ok, parsed = parse_literal(value, path, lineno, self.log,
                                               "a list" if kind == "list" else "a dict")
                    if not ok:
                        continue
                    want = list if kind == "list" else dict
                    if not isinstance(parsed, want):
                        self.err(loc, None, f"wrong value type: {param} of moment {name!r} is "
                                 f"{type(parsed).__name__}; expected a {want.__name__} literal")
                        continue
                entry = raw.setdefault(name, {})
                first.setdefault(name, loc)
                if kind == "dict":
                    entry.setdefault(param, {}).update(parsed)
                    continue
                if param in entry and entry[param] != parsed:
                    self.err(loc, None, f"duplicate definition of {param!r} for moment {name!r} (first set to "
                             f"{entry[param]!r} at {ploc[(name, param)]})")
                    continue
                entry[param] = parsed
                ploc.setdefault((name, param), loc)
        for name, p in raw.items():
            missing = [k for k in ("algorithm", "ext") if k not in p]
            if missing:
                self.err(first[name], None, f"moment {name!r} has no {missing[0]!r}; expected a line "
                         f"'{name} {missing[0]} <value>'")
                continue
            self.moments[name] = Moment(
                name=name,
                algorithm=p["algorithm"],
                mask=p.get("mask"),
                ext=p["ext"],
                ext_error=p.get("ext_error"),
                round=p.get("round", 1),
                maps_to_pass=tuple(p.get("maps_to_pass", ())),
                other_exts=dict(p.get("other_exts", {})),
                kwargs=dict(p.get("kwargs", {})),
            )
        self.moment_names = set(raw)

    # ----------------------------------------------------------- imaging key
    def read_imaging(self) -> None:
        interf_names = {n for (k, n) in self.config_entries if k == "interf_config"}
        mention: dict[str, _Loc] = {}
        for path, text in self.files_of("imaging_key"):
            for lineno, (config, product, stage, recipe) in iter_rows(
                path, text, 4, "config product stage recipe_file", self.log
            ):
                loc = _Loc(path, lineno)
                self.recipe_lines += 1
                ok = True
                if config != "all" and config not in interf_names:
                    self.err(loc, None, f"undefined config {config!r} in the imaging recipes; expected an "
                             f"interf config ({_fmt_choices(interf_names)}) or all")
                    ok = False
                plist = self.products_for(product)
                if plist is None:
                    self.err(loc, None, f"undefined product {product!r} in the imaging recipes; expected one of "
                             f"{_fmt_choices(self.all_product_names())}, all, all_line or all_cont")
                    ok = False
                if stage != "all" and stage not in IMAGING_STAGES:
                    self.err(loc, None, f"unknown imaging stage {stage!r}; expected one of "
                             f"{', '.join(IMAGING_STAGES)} or all")
                    ok = False
                rpath = self.expand_path(recipe, self.key_dir, loc)
                if rpath is None:
                    continue
                rtext = self.read(rpath, loc, "recipe file")
                if rtext is None:
                    continue
                if rpath not in self.clean_params:
                    self.clean_params[rpath] = parse_clean_text(rpath, rtext, self.log)
                if not ok:
                    continue
                configs = sorted(interf_names) if config == "all" else [config]
                stages = IMAGING_STAGES if stage == "all" else (stage,)
                for p in plist:
                    mention[p] = loc
                    for c in configs:
                        for s in stages:
                            self.recipes[(c, p, s)] = rpath
                            self.recipe_loc[(c, p, s)] = loc
        if not self.key_lists["imaging_key"]:
            return
        default = self.key_lists["imaging_key"][0][0]
        for c in sorted(self.interf):
            for p in sorted(self.line_products) + sorted(self.cont_products):
                for s in IMAGING_STAGES:
                    if (c, p, s) not in self.recipes:
                        loc = mention.get(p) or self.product_loc.get(p) or _Loc(default, 0)
                        self.err(loc, None, f"recipe missing for a stage: no imaging recipe for config {c!r} "
                                 f"product {p!r} stage {s!r}; expected a line '{c} {p} {s} <recipe.clean>' "
                                 "(or one using all) in the imaging recipes")

    # ----------------------------------------------------------- derived key
    def read_derived(self) -> None:
        configs = self.all_config_names()
        for path, text in self.files_of("derived_key"):
            for lineno, (config, product, fld, value) in iter_rows(
                path, text, 4, "config product field value", self.log, rest_is_value=True
            ):
                loc = _Loc(path, lineno)
                if fld not in DERIVED_FIELDS:
                    self.err(loc, None, f"unknown derived field {fld!r}; expected one of "
                             f"{_fmt_choices(DERIVED_FIELDS)}")
                    continue
                if config != "all" and config not in configs:
                    self.err(loc, None, f"undefined config {config!r} in the derived key; expected one of "
                             f"{_fmt_choices(configs)} or all")
                    continue
                plist = self.products_for(product)
                if plist is None:
                    self.err(loc, None, f"undefined product {product!r} in the derived key; expected one of "
                             f"{_fmt_choices(self.all_product_names())}, all, all_line or all_cont")
                    continue
                ok, parsed = parse_literal(value, path, lineno, self.log,
                                           "a list" if fld in ("mask_configs", "moments") else "a dict")
                if not ok:
                    continue
                if not self._check_derived_value(loc, fld, parsed, configs):
                    continue
                for c in (sorted(configs) if config == "all" else [config]):
                    for p in plist:
                        d = self.derived.setdefault((c, p), {"ang_res": {}, "phys_res": {}, "mask_configs": [],
                                                             "moments": [], "kwargs": {}})
                        if fld in ("ang_res", "phys_res"):
                            d[fld].update(parsed)
                        elif fld in ("mask_configs", "moments"):
                            d[fld].extend(x for x in parsed if x not in d[fld])
                        else:
                            d["kwargs"].setdefault(fld, {}).update(parsed)

    def _check_derived_value(self, loc: _Loc, fld: str, v: Any, configs: set[str]) -> bool:
        if fld in ("ang_res", "phys_res"):
            ok = isinstance(v, dict) and all(isinstance(k, str) and _is_num(x) and x > 0 for k, x in v.items())
            if not ok:
                unit = "arcsec" if fld == "ang_res" else "pc"
                self.err(loc, None, f"wrong value type for {fld}: {v!r}; expected a dict of tag -> positive "
                         f"number ({unit}) such as {{'2as':2.0}}")
            return ok
        if fld in ("mask_configs", "moments"):
            if problem := _list_str(v):
                self.err(loc, None, f"wrong value type for {fld}: {v!r}; expected {problem}")
                return False
            known = configs if fld == "mask_configs" else getattr(self, "moment_names", set())
            bad = [x for x in v if x not in known]
            if bad:
                what = "config" if fld == "mask_configs" else "moment"
                self.err(loc, None, f"undefined {what} {bad[0]!r} in {fld}; expected one of {_fmt_choices(known)}")
                return False
            return True
        if not isinstance(v, dict):
            self.err(loc, None, f"wrong value type for {fld}: {type(v).__name__}; expected a dict literal")
            return False
        return True

    # ------------------------------------------------- target/product/file keys
    def _read_tpf(self, kind: str, out: dict[tuple[str, str], str], allow_all: bool, label: str) -> None:
        seen: dict[tuple[str, str], _Loc] = {}
        products = self.all_product_names()
        for path, text in self.files_of(kind):
            for lineno, (target, product, fname) in iter_rows(path, text, 3, "target product filename", self.log):
                loc = _Loc(path, lineno)
                if not self.known_target(target):
                    self.undefined_target(loc, target, label)
                    continue
                if product not in products and not (allow_all and product == "all"):
                    self.err(loc, None, f"undefined product {product!r} in the {label}; expected one of "
                             f"{_fmt_choices(products)}{' or all' if allow_all else ''}")
                    continue
                if (target, product) in seen:
                    self.err(loc, None, f"duplicate definition of ({target}, {product}) in the {label} "
                             f"(first at {seen[(target, product)]})")
                    continue
                seen[(target, product)] = loc
                out[(target, product)] = fname

    # ----------------------------------------------------------------- CSV keys
    def read_distances(self) -> None:
        seen: dict[str, _Loc] = {}
        for path, text in self.files_of("distance_key"):
            for lineno, (target, dist) in iter_csv_rows(path, text, ("target", "dist"), self.log):
                loc = _Loc(path, lineno)
                try:
                    d = float(dist)
                except ValueError:
                    self.err(loc, None, f"wrong value type: distance {dist!r} of {target!r}; expected a number "
                             "(Mpc)")
                    continue
                if not d > 0:
                    self.err(loc, None, f"wrong value: distance of {target!r} is {dist}; expected > 0 Mpc")
                    continue
                if not self.known_target(target):
                    self.undefined_target(loc, target, "distance key")
                    continue
                if target in seen:
                    self.err(loc, None, f"duplicate definition of the distance of {target!r} (first at "
                             f"{seen[target]})")
                    continue
                seen[target] = loc
                self.distances[target] = d

    def read_windows(self) -> None:
        seen: dict[str, _Loc] = {}
        for path, text in self.files_of("window_key"):
            for lineno, (target, window, vfield) in iter_csv_rows(
                path, text, ("target", "window", "vfield_file"), self.log
            ):
                loc = _Loc(path, lineno)
                try:
                    w = float(window)
                except ValueError:
                    self.err(loc, None, f"wrong value type: window {window!r} of {target!r}; expected a number "
                             "(km/s)")
                    continue
                if not w > 0:
                    self.err(loc, None, f"wrong value: window of {target!r} is {window}; expected > 0 km/s")
                    continue
                if not self.known_target(target):
                    self.undefined_target(loc, target, "window key")
                    continue
                if target in seen:
                    self.err(loc, None, f"duplicate definition of the window of {target!r} (first at "
                             f"{seen[target]})")
                    continue
                seen[target] = loc
                self.windows[target] = (str(w), vfield or None)

    # ---------------------------------------------------------------- overrides
    def _override_scope(self, key: str) -> tuple[str, str | None, str | None] | None:
        if key == "all" or self.known_target(key) or key in self.mosaics:
            return (key, None, None)
        configs = sorted(self.all_config_names(), key=len, reverse=True)
        for c in configs:
            if key.endswith("_" + c) and self.known_target(key[: -len(c) - 1]):
                return (key[: -len(c) - 1], c, None)
        for p in self.all_product_names():
            if not key.endswith("_" + p):
                continue
            rest = key[: -len(p) - 1]
            for c in configs:
                if rest.endswith("_" + c) and self.known_target(rest[: -len(c) - 1]):
                    return (rest[: -len(c) - 1], c, p)
        return None

    def read_overrides(self) -> None:
        ploc: dict[tuple[str, str], _Loc] = {}
        for path, text in self.files_of("override_key"):
            for lineno, (key, param, value) in iter_rows(path, text, 3, "key param value", self.log,
                                                           rest_is_value=True):
                loc = _Loc(path, lineno)
                try:
                    parsed: Any = ast.literal_eval(value)
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    parsed = value
                if key not in self.override_scope:
                    scope = self._override_scope(key)
                    if scope is None:
                        self.log.warn(path, lineno, f"override key {key!r} names no defined target[_config"
                                      "[_product]]; it never applies")
                        scope = (key, None, None)
                    self.override_scope[key] = scope
                entry = self.overrides.setdefault(key, {})
                if param in entry:
                    if entry[param] != parsed:
                        self.err(loc, None, f"duplicate definition of override {key} {param} (first set to "
                                 f"{entry[param]!r} at {ploc[(key, param)]})")
                    else:
                        self.log.warn(path, lineno, f"override {key} {param} repeated (same value)")
                    continue
                entry[param] = parsed
                ploc[(key, param)] = loc

    # --------------------------------------------------------- unshipped keys
    def read_others(self) -> None:
        for path, text in self.files_of("casaversion_key"):
            for _lineno, (version, cpath) in iter_rows(path, text, 2, "version path", self.log):
                self.casaversions[version] = cpath
        for path, text in self.files_of("alma_download_key"):
            for lineno, (target, product, config, value) in iter_rows(
                path, text, 4, "target product config {dict}", self.log, rest_is_value=True
            ):
                ok, parsed = parse_literal(value, path, lineno, self.log, "a dict")
                if not ok:
                    continue
                if not isinstance(parsed, dict):
                    self.err(_Loc(path, lineno), None, f"wrong value type: expected a dict, got "
                             f"{type(parsed).__name__}")
                    continue
                self.download.setdefault((target, product, config), {}).update(parsed)

    # ------------------------------------------------------------------ run
    def load(self) -> Project:
        self.read_master()
        self.read_targets()
        self.read_linmos()
        self.read_dirs()
        self.read_configs()
        self.read_ms()
        self.read_moments()
        self.read_imaging()
        self.read_derived()
        self._read_tpf("singledish_key", self.sd_files, False, "single-dish key")
        self._read_tpf("cleanmask_key", self.mask_files, True, "clean-mask key")
        self.read_distances()
        self.read_windows()
        self.read_overrides()
        self.read_others()
        return self.build()

    def build(self) -> Project:
        derived = {
            k: DerivedSettings(
                ang_res=dict(v["ang_res"]),
                phys_res=dict(v["phys_res"]),
                mask_configs=tuple(v["mask_configs"]),
                moments=tuple(v["moments"]),
                kwargs={kk: dict(vv) for kk, vv in v["kwargs"].items()},
            )
            for k, v in self.derived.items()
        }
        return Project(
            master_key=self.master,
            key_dir=self.key_dir,
            key_files=list(self.read_files),
            roots={k: list(v) for k, v in self.roots.items()},
            targets_by_name=dict(self.targets),
            dir_for_target=dict(self.dirs),
            mosaic_parts_by_name={k: list(v) for k, v in self.mosaics.items()},
            ms_by_target=self.ms,
            line_products_by_name=self.line_products,
            cont_products_by_name=self.cont_products,
            interf_configs_by_name=self.interf,
            feather_configs_by_name=self.feather,
            singledish_configs_by_name=self.sd_configs,
            array_tag_settings=self.array_tags,
            recipes=self.recipes,
            clean_params_by_file=self.clean_params,
            singledish_files=self.sd_files,
            cleanmask_files=self.mask_files,
            distances_mpc=self.distances,
            windows=self.windows,
            derived_settings=derived,
            moments_by_name=self.moments,
            override_entries=self.overrides,
            override_scope=self.override_scope,
            warnings=list(self.log.warnings),
            sha256=self.sha.hexdigest(),
            imaging_recipe_lines=self.recipe_lines,
            unresolved_roots=dict(self.unresolved),
        )



def load_project(path: str | os.PathLike[str]) -> Project:
    """Load, validate and model a PHANGS key set.

    Parameters
    ----------
    path : str or path-like
        A key directory containing ``master_key.txt``, or the master key file itself.

    Returns
    -------
    Project
        The validated model; ``Project.warnings`` lists non-fatal findings (missing data
        roots, stale overrides ...).

    Raises
    ------
    KeyFileError
        One exception listing every error of the key set (also as ``.errors``, a list of
        :class:`KeyIssue` with ``file``, ``line`` and ``message``).
    """
    report = check_key_set(path)
    raise_for_errors(report.errors, report.master_key)
    assert report.project is not None
    return report.project


@dataclass
class KeySetReport:
    """Result of :func:`check_key_set`: a best-effort project plus every error and warning."""

    master_key: str
    project: Project | None
    errors: list[KeyIssue]
    warnings: list[KeyIssue]

    @property
    def valid(self) -> bool:
        return not self.errors


def check_key_set(path: str | os.PathLike[str]) -> KeySetReport:
    """Check a key set without raising on key errors.

    ``project`` is built from what could be parsed even when there are errors (so counts
    can be reported); it is ``None`` only when the master key itself is missing.  Use
    :func:`load_project` to get a project that is guaranteed valid.
    """
    try:
        loader = _Loader(path)
    except (OSError, ValueError) as exc:
        return KeySetReport(str(path), None, [KeyIssue(str(path), 0, f"cannot load key set: {exc}")], [])
    try:
        project = loader.load()
    except KeyFileError as exc:
        errors = list(getattr(exc, "errors", [])) or [KeyIssue(str(loader.master), 0, str(exc))]
        return KeySetReport(str(loader.master), None, errors, list(loader.log.warnings))
    except (OSError, ValueError) as exc:  # unreadable path and similar: still one clean error
        loader.log.error(loader.master, 0, f"cannot load key set: {exc}")
        return KeySetReport(str(loader.master), None, list(loader.log.errors), list(loader.log.warnings))
    return KeySetReport(str(loader.master), project, list(loader.log.errors), list(loader.log.warnings))
