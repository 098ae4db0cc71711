"""Property: a randomly corrupted key set gives a clean KeyFileError (or loads), never another exception."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phangs_operators.errors import KeyFileError
from phangs_operators.keys import check_key_set, load_project

from .keyset import MINIMAL, REFERENCE_KEYS, write_keyset

MUTATIONS = (
    "drop_column",
    "duplicate_column",
    "break_literal",
    "bad_encoding",
    "empty_file",
    "truncate",
    "duplicate_line",
    "garbage_bytes",
    "swap_words",
)


def _mutate(data: st.DataObject, content: bytes) -> bytes:
    kind = data.draw(st.sampled_from(MUTATIONS), label="mutation")
    lines = content.split(b"\n")
    idx = data.draw(st.integers(0, max(len(lines) - 1, 0)), label="line")
    words = lines[idx].split()
    if kind == "drop_column" and words:
        del words[data.draw(st.integers(0, len(words) - 1))]
        lines[idx] = b"  ".join(words)
    elif kind == "duplicate_column" and words:
        j = data.draw(st.integers(0, len(words) - 1))
        words.insert(j, words[j])
        lines[idx] = b"  ".join(words)
    elif kind == "break_literal":
        line = lines[idx]
        targets = [i for i, c in enumerate(line) if c in b"{}[]',:=\"("] or [len(line)]
        pos = data.draw(st.sampled_from(targets))
        junk = data.draw(st.sampled_from([b"", b"{", b"]", b"'", b"(", b"1e", b"lambda:0", b"__import__('os')"]))
        lines[idx] = line[:pos] + junk + line[pos + 1 :]
    elif kind == "bad_encoding":
        pos = data.draw(st.integers(0, len(lines[idx])))
        bad = data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x00", b"\xe2\x82", b"\xfe\xff"]))
        lines[idx] = lines[idx][:pos] + bad + lines[idx][pos:]
    elif kind == "empty_file":
        return b""
    elif kind == "truncate":
        return content[: data.draw(st.integers(0, len(content)))]
    elif kind == "duplicate_line":
        lines.insert(idx, lines[idx])
    elif kind == "garbage_bytes":
        pos = data.draw(st.integers(0, len(content)))
        return content[:pos] + data.draw(st.binary(min_size=1, max_size=12)) + content[pos:]
    elif kind == "swap_words" and len(words) > 1:
        words[0], words[-1] = words[-1], words[0]
        lines[idx] = b" ".join(words)
    return b"\n".join(lines)


def _assert_clean(directory: Path) -> None:
    try:
        project = load_project(directory)
    except KeyFileError as exc:
        errors = exc.errors
        assert errors, "KeyFileError without errors"
        for e in errors:
            assert isinstance(e.file, str) and e.file
            assert isinstance(e.line, int) and e.line >= 0
            assert isinstance(e.message, str) and e.message
    else:
        project.summary()  # a model that loads answers its queries
    report = check_key_set(directory)
    assert report.valid == (not report.errors)
    if report.project is not None:
        report.project.summary()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_minimal_keyset_gives_clean_errors(data):
    name = data.draw(st.sampled_from(sorted(MINIMAL)), label="file")
    n_mut = data.draw(st.integers(1, 3), label="n_mutations")
    content = MINIMAL[name].encode()
    for _ in range(n_mut):
        content = _mutate(data, content)
    with tempfile.TemporaryDirectory() as tmp:
        _assert_clean(write_keyset(Path(tmp), {name: content}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_reference_keyset_gives_clean_errors(data):
    names = sorted(p.name for p in REFERENCE_KEYS.iterdir() if p.suffix in (".txt", ".clean"))
    name = data.draw(st.sampled_from(names), label="file")
    content = _mutate(data, (REFERENCE_KEYS / name).read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(REFERENCE_KEYS, tmp, dirs_exist_ok=True)
        target = Path(tmp) / name
        target.chmod(0o644)
        target.write_bytes(content)
        _assert_clean(Path(tmp))


def test_empty_files_each_give_a_clean_result():
    for name in sorted(MINIMAL):
        with tempfile.TemporaryDirectory() as tmp:
            _assert_clean(write_keyset(Path(tmp), {name: b""}))
