"""Low-level reading of PHANGS key files: text decoding, rows, Python literals, ``.clean`` recipes.

Nothing here executes key-file content: literals go through :func:`ast.literal_eval`, and
``.clean`` recipe files (CASA ``saveinputs`` format, ``name = value`` per line) are parsed
line by line as data.  Every problem is recorded in an :class:`IssueLog` with its file and
line, so a whole key set can be checked in one pass.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from phangs_operators.keys.issues import IssueLog

_CLEAN_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")

_LITERAL_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError)


def decode_key_bytes(data: bytes, path: Path, log: IssueLog) -> str | None:
    """Decode a key file as UTF-8 text; record an error (with the line) and return None if it is not."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        log.error(
            path,
            line,
            f"bad encoding: byte 0x{data[exc.start]:02x} is not valid UTF-8; expected a plain-text "
            "(UTF-8 or ASCII) key file",
        )
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        log.error(path, line, "bad encoding: NUL byte in a key file; expected plain text")
        return None
    return text.lstrip("\ufeff")


def is_comment_or_blank(line: str) -> bool:
    """Blank lines and lines whose first non-blank character is ``#``."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def iter_rows(
    path: Path,
    text: str,
    ncols: int,
    fmt: str,
    log: IssueLog,
    rest_is_value: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated rows of a key file, as (line number, words).

    Parameters
    ----------
    ncols : int
        Expected number of columns.
    fmt : str
        Column names for messages, e.g. ``'target product filename'``.
    rest_is_value : bool
        The last column takes the rest of the line (a dict/list literal may contain spaces).
    """
    for lineno, line in enumerate(text.splitlines(), start=1):
        if is_comment_or_blank(line):
            continue
        words = line.split(None, ncols - 1) if rest_is_value else line.split()
        if rest_is_value and words:
            words[-1] = words[-1].strip()
        if len(words) != ncols:
            log.error(
                path,
                lineno,
                f"wrong column count: expected {ncols} columns ({fmt}), found {len(words)}: {line.strip()!r}",
            )
            continue
        yield lineno, words


def iter_csv_rows(
    path: Path, text: str, columns: tuple[str, ...], log: IssueLog
) -> Iterator[tuple[int, list[str]]]:
    """Comma-separated rows (``#`` comments/ECSV header skipped; a first row naming the columns skipped)."""
    first = True
    for lineno, line in enumerate(text.splitlines(), start=1):
        if is_comment_or_blank(line):
            continue
        fields = [f.strip() for f in line.split(",")]
        if first:
            first = False
            if fields and fields[0].lower() in ("target", "galaxy", "name"):
                continue  # the column-name row of the (E)CSV table
        if len(fields) != len(columns):
            log.error(
                path,
                lineno,
                f"wrong column count: expected {len(columns)} comma-separated columns "
                f"({','.join(columns)}), found {len(fields)}: {line.strip()!r}",
            )
            continue
        yield lineno, fields


def parse_literal(value: str, path: Path, lineno: int, log: IssueLog, expected: str) -> tuple[bool, Any]:
    """``ast.literal_eval`` a value; on failure record 'unparsable literal' and return (False, None)."""
    try:
        return True, ast.literal_eval(value)
    except _LITERAL_ERRORS as exc:
        reason = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
        log.error(
            path,
            lineno,
            f"unparsable literal {_short(value)}: {reason}; expected a Python literal ({expected})",
        )
        return False, None


def _short(value: str, n: int = 80) -> str:
    return repr(value if len(value) <= n else value[: n - 3] + "...")


def _strip_trailing_comment(value: str) -> str | None:
    """Drop a trailing ``# comment`` from a value using the tokenizer (``#`` inside strings kept)."""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(value).readline):
            if tok.type == tokenize.COMMENT:
                return value[: tok.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    return None


def parse_clean_text(path: Path, text: str, log: IssueLog) -> dict[str, Any]:
    """Parse a ``.clean`` recipe (``name = value`` lines, CASA ``saveinputs`` format) as data.

    Returns
    -------
    dict
        tclean parameter name -> value (Python literal).  Errors are recorded in ``log``.
    """
    params: dict[str, Any] = {}
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if is_comment_or_blank(line):
            continue
        m = _CLEAN_LINE.match(line)
        if not m:
            log.error(path, lineno, f"expected 'parameter = value' in a .clean recipe, got {line.strip()!r}")
            continue
        name, value = m.group(1), m.group(2)
        try:
            parsed = ast.literal_eval(value)
        except _LITERAL_ERRORS:
            stripped = _strip_trailing_comment(value)
            ok, parsed = (False, None)
            if stripped:
                try:
                    parsed, ok = ast.literal_eval(stripped), True
                except _LITERAL_ERRORS:
                    ok = False
            if not ok:
                log.error(
                    path,
                    lineno,
                    f"unparsable literal {_short(value)} for recipe parameter {name!r}; expected a Python "
                    "literal such as \"cube\", 0.5, True or ['0.25arcsec']",
                )
                continue
        if name in params:
            log.error(
                path,
                lineno,
                f"duplicate definition of recipe parameter {name!r} (first at {path}:{first_line[name]})",
            )
            continue
        params[name] = parsed
        first_line[name] = lineno
    return params
