"""PHANGS key files -> one validated project model.

Entry point::

    from phangs_operators.keys import load_project
    project = load_project("include/keys")          # a key dir or its master_key.txt

:func:`load_project` reads the master key and every key file it lists (unchanged PHANGS
format, see ``PHANGS_REFERENCE.md`` section 1), checks the whole key set and raises one
:class:`~phangs_operators.errors.KeyFileError` listing **all** errors (``exc.errors`` is a
list of :class:`KeyIssue` with ``file``, ``line``, ``message``).  Non-fatal findings
(missing data roots, stale overrides, unused array tags) are in ``project.warnings``.

:func:`check_key_set` does the same without raising and returns a :class:`KeySetReport`
(``errors``, ``warnings`` and a best-effort ``project`` for counts); ``phangs keys check``
uses it.

Parsing rules (differences from the original ``KeyHandler`` on purpose):

* Python literals are read with :func:`ast.literal_eval`; a dict/list value may contain
  spaces (the last column takes the rest of the line).  ``.clean`` recipes are parsed as
  ``name = value`` data, never executed.
* Lines are never dropped silently: a wrong column count, unknown key kind/parameter,
  unparsable literal, wrong value type (e.g. ``'channel_kms':2`` -- write ``2.0``),
  duplicate definition with a different value, reference to an undefined
  target/config/product/moment, mosaic part without definition, missing key file, or a
  missing recipe for an (interf config, product, stage) is an error naming ``file:line``.
* Comment lines start with ``#`` after optional blanks.  CSV keys (distance, window) skip
  ``#`` lines and a first row naming the columns (the ECSV header), so the window key's
  header is *not* turned into a bogus target ``target`` (the original does that).
* Master key roots: ``${VAR}``/``$VAR``/``~`` are expanded; relative roots are relative to
  the master key's directory; key files are relative to ``key_dir`` (default: the master
  key's directory; an absolute ``key_dir`` that does not exist falls back to the master
  key's directory with a warning, so the shipped PHANGS-ALMA keys load unchanged).
  Missing, non-existent or unresolvable (``${VAR}`` unset) data roots are warnings;
  :meth:`Project.require_roots` turns them into errors when a pipeline run needs them.
  An unset variable in a key-file path is an error.
* Overrides are stored per key (``all``, ``target``, ``target_config``,
  ``target_config_product``) and honoured by :meth:`Project.overrides`; a key that names no
  defined target is a warning (the PHANGS-ALMA key set has a few).

Queries of :class:`Project` (lists are sorted):

========================================  ==================================================
targets / whole targets / mosaics         ``targets()``, ``target(name)``, ``whole_targets()``,
                                          ``mosaics()``, ``mosaic_parts(mosaic=None)``,
                                          ``mosaic_of(part)``, ``is_mosaic(t)``,
                                          ``non_mosaic_targets()``
phase centre, vsys, vwidth                ``phasecenter(t)``, ``vsys_vwidth(t, check_parent)``
working directories and roots             ``working_dir(t)``, ``working_dirs()``, ``root(name)``,
                                          ``target_dir(root_name, t)``, ``require_roots(...)``
measurement sets                          ``ms_entries(t, array_tag)``, ``targets_with_uvdata()``,
                                          ``array_tags_for_target(t)``, ``ms_candidates(e)``,
                                          ``ms_path(e)``, ``ms_for(t, array_tag)``,
                                          ``has_data_for_config(t, c, strict)``
configs                                   ``interf_configs()``, ``feather_configs()``,
                                          ``all_configs()``, ``interf_config(c)``,
                                          ``feather_config(c)``, ``array_tags(c)``,
                                          ``clean_scales_arcsec(c)``, ``feather_config_for(c)``,
                                          ``interf_config_for(f)``, ``timebin_for_array_tag(tag)``,
                                          ``singledish_config(name)``
products                                  ``line_products()``, ``cont_products()``, ``products()``,
                                          ``line_product(p)`` (line_tag, channel_kms,
                                          statwt_edge_kms, fitorder, combinespw, lines_to_flag,
                                          ...), ``cont_product(p)``, ``is_line_product(p)``,
                                          ``line_flag_ranges_ghz(t, p)``
imaging recipes                           ``recipe_file(c, p, stage)``, ``recipe_files(c, p)``,
                                          ``clean_parameters(c, p, stage=None)``
overrides                                 ``overrides(t, c, p)``, ``override(param, t, c, p, default)``
single dish, clean masks                  ``singledish_file(t, p)``, ``singledish_path(t, p)``,
                                          ``has_singledish(t, p)``, ``cleanmask_file(t, p)``,
                                          ``cleanmask_path(t, p)``
distance, velocity window                 ``distance_mpc(t)`` (parts inherit), ``velocity_window(t)``
                                          (``'40.0km/s'``), ``velocity_window_kms(t)``,
                                          ``vfield_file(t)``
derived settings, moments                 ``derived(c, p)``, ``ang_res``, ``phys_res``,
                                          ``mask_configs``, ``moment_list``, ``derived_kwargs(c, p,
                                          kind)``, ``moments()``, ``moment(name)``
workflow                                  ``imaging_combinations(...)``, ``feather_combinations(...)``,
                                          ``mosaic_combinations(...)``,
                                          ``pipeline_combinations(...)`` (``strict_config``
                                          semantics), ``keyset_hash()``, ``summary()``
========================================  ==================================================

Line helpers (:mod:`phangs_operators.keys.lines`): :func:`get_ghz_range_for_line`,
:func:`get_ghz_ranges_for_lines`, :func:`expand_line_families`, :func:`get_line_frequency_ghz`.
"""

from __future__ import annotations

from phangs_operators.errors import KeyFileError
from phangs_operators.keys.issues import KeyIssue
from phangs_operators.keys.lines import (
    LINE_FAMILIES,
    LINE_REST_FREQUENCIES_GHZ,
    expand_line_families,
    get_ghz_range_for_line,
    get_ghz_ranges_for_lines,
    get_line_frequency_ghz,
    is_line_family,
    merge_ranges,
)
from phangs_operators.keys.loader import MASTER_KEY_NAME, KeySetReport, check_key_set, load_project
from phangs_operators.keys.model import (
    IMAGING_STAGES,
    Combination,
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

__all__ = [
    "IMAGING_STAGES",
    "LINE_FAMILIES",
    "LINE_REST_FREQUENCIES_GHZ",
    "MASTER_KEY_NAME",
    "Combination",
    "ContProduct",
    "DerivedSettings",
    "FeatherConfig",
    "InterfConfig",
    "KeyFileError",
    "KeyIssue",
    "KeySetReport",
    "LineProduct",
    "Moment",
    "MsEntry",
    "Project",
    "Target",
    "check_key_set",
    "expand_line_families",
    "get_ghz_range_for_line",
    "get_ghz_ranges_for_lines",
    "get_line_frequency_ghz",
    "is_line_family",
    "load_project",
    "merge_ranges",
]
