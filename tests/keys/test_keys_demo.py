"""The demo key set of the simulated project (include/keys/) loads without errors."""

from __future__ import annotations

from pathlib import Path

from phangs_operators.keys import check_key_set, load_project

DEMO_KEYS = Path(__file__).resolve().parents[2] / "include" / "keys"


def test_demo_keys_exist():
    assert (DEMO_KEYS / "master_key.txt").is_file()


def test_demo_keys_load_without_errors():
    report = check_key_set(DEMO_KEYS)
    assert report.errors == []
    project = load_project(DEMO_KEYS)
    assert project.targets() and project.interf_configs() and project.products()
    # every interf config x product x stage has a recipe, and the combinations are non-empty
    assert project.imaging_combinations()
    for c in project.interf_configs():
        for p in project.products():
            assert len(project.recipe_files(c, p)) == 3


def test_demo_keys_roots_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PHANGS_DEMO_ROOT", str(tmp_path))
    project = load_project(DEMO_KEYS)
    assert not [w for w in project.warnings if "cannot be resolved" in w.message]
    roots = project.require_roots("imaging_root", "postprocess_root", "derived_root")
    master = (DEMO_KEYS / "master_key.txt").read_text()
    if "${PHANGS_DEMO_ROOT}" in master:
        assert any(str(p).startswith(str(tmp_path)) for p in roots.values())
