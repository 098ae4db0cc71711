"""QA thresholds: the versioned defaults shipped with the package, overridable per project.

The defaults live in ``qa_thresholds.yaml`` next to this module. A project file (YAML or
JSON, same layout, any subset) is merged over them key by key; its path comes from the
caller (``phangs qa --thresholds``, the QA operator's ``thresholds`` argument) or from
``$PHANGS_QA_THRESHOLDS``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phangs_operators.errors import PhangsError

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).with_name("qa_thresholds.yaml")
ENV_VAR = "PHANGS_QA_THRESHOLDS"

#: score colour classes (ALMA pipeline convention)
GREEN, YELLOW = 0.66, 0.33


class QAConfigError(PhangsError):
    """A QA thresholds file cannot be read or has a wrong layout."""


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise QAConfigError(f"QA thresholds file {str(path)!r}: {exc.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml  # noqa: PLC0415 - only when a file is read

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml/json errors carry line numbers
        raise QAConfigError(f"QA thresholds file {str(path)!r}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise QAConfigError(f"QA thresholds file {str(path)!r}: top level must be a mapping")
    return dict(data)


def _merge(base: dict[str, Any], override: Mapping[str, Any], where: str, source: str) -> None:
    for key, value in override.items():
        if key not in base:
            raise QAConfigError(f"QA thresholds file {source!r}: unknown key {where}{key}")
        if isinstance(base[key], dict) and isinstance(value, Mapping):
            _merge(base[key], value, f"{where}{key}.", source)
        else:
            base[key] = copy.deepcopy(value)


@dataclass
class QAConfig:
    """Merged QA thresholds.

    Attributes
    ----------
    data : dict
        ``{section: {name: value}}`` after merging.
    sources : list of str
        Files merged, defaults first.
    """

    data: dict[str, Any]
    sources: list[str] = field(default_factory=list)

    @property
    def version(self) -> int:
        return int(self.data.get("version", 0))

    def get(self, section: str, name: str, default: Any = None) -> Any:
        """One threshold, e.g. ``get("imaging", "beam_axis_ratio") -> {"good": 1.5, "bad": 2.5}``."""
        return self.data.get(section, {}).get(name, default)

    def digest(self) -> str:
        """sha256 of the merged thresholds (recorded in the report)."""
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "sources": list(self.sources), "sha256": self.digest(),
                "thresholds": copy.deepcopy(self.data)}


def load_config(path: str | os.PathLike[str] | None = None) -> QAConfig:
    """The default thresholds merged with a project file.

    Parameters
    ----------
    path
        Project thresholds (YAML or JSON); ``None`` uses ``$PHANGS_QA_THRESHOLDS`` when set.

    Raises
    ------
    QAConfigError
        Unreadable file, not a mapping, an unknown key (typos must not pass silently), or a
        version different from the defaults'.
    """
    data = _read(DEFAULTS_FILE)
    sources = [str(DEFAULTS_FILE)]
    chosen = path if path is not None else os.environ.get(ENV_VAR) or None
    if chosen:
        p = Path(chosen)
        override = _read(p)
        version = override.pop("version", data.get("version"))
        if version != data.get("version"):
            raise QAConfigError(f"QA thresholds file {str(p)!r}: version {version} but this software "
                                f"reads version {data.get('version')}")
        _merge(data, override, "", str(p))
        sources.append(str(p))
        log.info("QA thresholds: %s merged over the defaults", p)
    return QAConfig(data=data, sources=sources)
