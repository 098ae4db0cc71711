"""Provenance of a published product: who/what/where made it (no credentials, ever)."""

from __future__ import annotations

import importlib.metadata
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse, urlunparse

from phangs_operators.errors import StoreError
from phangs_operators.stores.names import validate_sha256

__all__ = ["Provenance", "RunContext", "clean_uri", "software_versions"]

#: distributions whose versions are recorded with every product
SOFTWARE = (
    "phangs-airflow",
    "casatools",
    "casatasks",
    "astropy",
    "spectral-cube",
    "radio-beam",
    "numpy",
    "apache-airflow",
)


def software_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape a product (no imports: metadata only)."""
    out: dict[str, str | None] = {}
    for dist in SOFTWARE:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def clean_uri(uri: str) -> str:
    """Drop user info, query and fragment from a URI so no credential reaches the catalog.

    ``s3://key:secret@bucket/x?X-Amz-Signature=...`` -> ``s3://bucket/x``; plain paths are
    returned unchanged.
    """
    if not isinstance(uri, str) or not uri or "\x00" in uri or len(uri) > 2048:
        raise StoreError(f"invalid input URI {uri!r}")
    parsed = urlparse(uri)
    if not parsed.scheme:
        return uri
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    return urlunparse((parsed.scheme, netloc, parsed.path, "", "", ""))


@dataclass(frozen=True)
class RunContext:
    """The Airflow task attempt that publishes (or a manual run).

    Attributes
    ----------
    dag_id, run_id, task_id : str
        Airflow identifiers (``manual`` outside Airflow).
    map_index : int
        Mapped task index (-1 when not mapped).
    try_number : int
        Attempt number (1 for the first try).
    host : str
        Host name of the worker.
    """

    dag_id: str = "manual"
    run_id: str = "manual"
    task_id: str = "manual"
    map_index: int = -1
    try_number: int = 1
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def from_env(cls) -> RunContext:
        """From the ``AIRFLOW_CTX_*`` variables Airflow exports in task processes."""
        env = os.environ
        return cls(
            dag_id=env.get("AIRFLOW_CTX_DAG_ID", "manual"),
            run_id=env.get("AIRFLOW_CTX_DAG_RUN_ID", "manual"),
            task_id=env.get("AIRFLOW_CTX_TASK_ID", "manual"),
            map_index=int(env.get("AIRFLOW_CTX_MAP_INDEX", "-1") or -1),
            try_number=int(env.get("AIRFLOW_CTX_TRY_NUMBER", "1") or 1),
        )

    @classmethod
    def from_airflow_context(cls, context: Any) -> RunContext:
        """From the ``context`` passed to ``BaseOperator.execute``."""
        ti = context["ti"]
        return cls(
            dag_id=str(ti.dag_id),
            run_id=str(ti.run_id),
            task_id=str(ti.task_id),
            map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
            try_number=int(getattr(ti, "try_number", 1) or 1),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


@dataclass(frozen=True)
class Provenance:
    """Inputs and recipe of one product.

    Attributes
    ----------
    inputs : tuple of (str, str or None)
        ``(uri, sha256)`` of each input (measurement sets, cubes, key files...); URIs are
        cleaned of credentials with :func:`clean_uri`.
    keyset_hash : str or None
        Hash of the key set the product was made from.
    recipe : str or None
        Name of the recipe (clean recipe, derived-product recipe...).
    software : dict
        Package versions (default: :func:`software_versions` at publish time).
    """

    inputs: tuple[tuple[str, str | None], ...] = ()
    keyset_hash: str | None = None
    recipe: str | None = None
    software: dict[str, str | None] = field(default_factory=software_versions)

    def __post_init__(self) -> None:
        cleaned = []
        for item in self.inputs:
            uri, sha = (item, None) if isinstance(item, str) else item
            if sha is not None:
                validate_sha256(sha, f"sha256 of input {uri}")
            cleaned.append((clean_uri(uri), sha))
        object.__setattr__(self, "inputs", tuple(cleaned))
        for name in ("keyset_hash", "recipe"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > 500 or "\x00" in value):
                raise StoreError(f"invalid provenance {name} {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "inputs": [list(i) for i in self.inputs],
            "keyset_hash": self.keyset_hash,
            "recipe": self.recipe,
            "software": dict(self.software),
        }
