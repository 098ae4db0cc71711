"""Resolve Airflow connections for the store and the catalog (credentials never in code).

Airflow is imported lazily, only when a connection id is actually resolved, so the local
folder store and a SQLite/URL catalog work without touching Airflow at all.
"""

from __future__ import annotations

import logging
from typing import Any

from phangs_operators.errors import StoreError

__all__ = ["get_connection"]

log = logging.getLogger(__name__)


def get_connection(conn_id: str, conn_types: tuple[str, ...]) -> Any:
    """Return the Airflow connection ``conn_id``, checking that it exists and has a known type.

    Parameters
    ----------
    conn_id : str
        Airflow connection id (``AIRFLOW_CONN_<ID>`` env var, secrets backend or metadata DB).
    conn_types : tuple of str
        Accepted ``conn_type`` values (e.g. ``("aws",)`` or ``("postgres",)``).

    Raises
    ------
    StoreError
        The connection is not defined (Airflow would otherwise fall back to anonymous AWS
        access) or has another type.
    """
    if not isinstance(conn_id, str) or not conn_id:
        raise StoreError(f"invalid Airflow connection id {conn_id!r}")
    try:
        from airflow.sdk import BaseHook
    except ImportError as exc:  # pragma: no cover - airflow is a dependency
        raise StoreError(f"cannot resolve connection {conn_id!r}: Airflow is not importable ({exc})") from exc
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException and secrets-backend failures
        raise StoreError(
            f"Airflow connection {conn_id!r} is not defined (set AIRFLOW_CONN_{conn_id.upper()} or add it with "
            f"'airflow connections add'): {exc}"
        ) from exc
    if (conn.conn_type or "") not in conn_types:
        raise StoreError(
            f"Airflow connection {conn_id!r} has type {conn.conn_type!r}; expected one of {', '.join(conn_types)}"
        )
    log.debug("resolved Airflow connection %s (type %s)", conn_id, conn.conn_type)
    return conn
