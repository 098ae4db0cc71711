"""Problems found in a key set: one :class:`KeyIssue` per problem, collected by :class:`IssueLog`."""

from __future__ import annotations

from dataclasses import dataclass, field

from phangs_operators.errors import KeyFileError

__all__ = ["KeyIssue", "IssueLog", "KeyFileError", "raise_for_errors"]


@dataclass(frozen=True)
class KeyIssue:
    """One problem in a key set.

    Attributes
    ----------
    file : str
        Path of the key file at fault (as resolved by the loader).
    line : int
        1-based line number; 0 when the problem concerns the whole file.
    message : str
        What is wrong and what was expected.
    """

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "message": self.message}


@dataclass
class IssueLog:
    """Errors and warnings collected while loading a key set."""

    errors: list[KeyIssue] = field(default_factory=list)
    warnings: list[KeyIssue] = field(default_factory=list)

    def error(self, file: object, line: int, message: str) -> None:
        self.errors.append(KeyIssue(str(file), int(line), message))

    def warn(self, file: object, line: int, message: str) -> None:
        self.warnings.append(KeyIssue(str(file), int(line), message))


def raise_for_errors(errors: list[KeyIssue], what: str) -> None:
    """Raise one :class:`KeyFileError` listing every error (and carrying them as ``.errors``)."""
    if not errors:
        return
    n = len(errors)
    lines = "\n".join(f"  {e}" for e in errors)
    exc = KeyFileError(f"{n} error{'s' if n != 1 else ''} in key set {what}:\n{lines}")
    exc.errors = list(errors)  # type: ignore[attr-defined]
    raise exc
