"""Validated names and object keys of the product store.

Every path component of an object key (target, config, product, file name, and the
catalog's stage/kind/resolution labels) is checked against one allow-list before it is
used, so a name like ``../x``, ``a/b``, ``''`` or ``x'; DROP TABLE products;--`` can never
reach a file system path, an S3 key or (un-parameterised) SQL.

Key layout (relative to the store base)::

    {target}/{config}/{product}/{filename}              version 1
    {target}/{config}/{product}/_v{N}/{filename}        version N >= 2
    _tmp/{target}/{config}/{product}/{sha256[:32]}/{filename}   upload in progress

Names may not start with ``_`` or ``.``, so the ``_v{N}`` and ``_tmp`` folders and the
local backend's hidden ``.{name}.meta.json`` sidecars never collide with products.
"""

from __future__ import annotations

import re

from phangs_operators.errors import StoreError

__all__ = [
    "NAME_PATTERN",
    "TEMP_PREFIX",
    "product_key",
    "product_prefix",
    "temp_key",
    "validate_label",
    "validate_name",
    "validate_sha256",
]

#: allowed characters of a name: PHANGS names use letters, digits, ``_ . + -``
#: (e.g. ``ngc0628_12m+7m+tp_co21_150pc_strict_mom0.fits``).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,199}")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
TEMP_PREFIX = "_tmp"


def validate_name(value: object, what: str = "name") -> str:
    """Return ``value`` if it is a safe single path component, else raise.

    Parameters
    ----------
    value : object
        Candidate name (must be a ``str``).
    what : str
        What the name is (``"target"``, ``"file name"``...), used in the error message.

    Raises
    ------
    StoreError
        Empty, too long (> 200 characters), containing ``/``, ``\\``, ``..``, whitespace,
        quotes or other characters outside ``[A-Za-z0-9_.+-]``, or starting with ``_``, ``.``,
        ``+`` or ``-``.
    """
    if not isinstance(value, str):
        raise StoreError(f"invalid {what} {value!r}: must be a string")
    if not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise StoreError(
            f"invalid {what} {value!r}: use 1-200 characters from [A-Za-z0-9_.+-], starting with a "
            "letter or digit, without '..' or '/'"
        )
    return value


def validate_label(value: object, what: str = "label") -> str:
    """Like :func:`validate_name` but the empty string is allowed (e.g. native resolution)."""
    if value == "":
        return ""
    return validate_name(value, what)


def validate_sha256(value: object, what: str = "sha256") -> str:
    """Return a lower-case hex SHA-256 digest or raise :class:`StoreError`."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise StoreError(f"invalid {what} {value!r}: expected 64 lower-case hex digits")
    return value


def product_prefix(target: str, config: str, product: str) -> str:
    """Key prefix ``{target}/{config}/{product}/`` of one product, names validated."""
    return "/".join(
        (validate_name(target, "target"), validate_name(config, "config"), validate_name(product, "product"))
    ) + "/"


def product_key(target: str, config: str, product: str, filename: str, version: int = 1) -> str:
    """Object key (relative to the store base) of version ``version`` of a product file.

    Version 1 sits at the PHANGS layout ``{target}/{config}/{product}/{filename}``; later
    versions under ``_v{N}/`` in the same folder, so nothing is ever overwritten.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoreError(f"invalid version {version!r}: expected an integer >= 1")
    prefix = product_prefix(target, config, product)
    name = validate_name(filename, "file name")
    return f"{prefix}{name}" if version == 1 else f"{prefix}_v{version}/{name}"


def temp_key(target: str, config: str, product: str, filename: str, sha256: str) -> str:
    """Temporary key of an upload in progress (deterministic: a retry reuses it)."""
    validate_sha256(sha256)
    return f"{TEMP_PREFIX}/{product_prefix(target, config, product)}{sha256[:32]}/{validate_name(filename, 'file name')}"
