"""Post-processing of the simulated tiny target (simulate -> stage -> tclean -> postprocess_cube).

Uses the session's ``tiny_demo`` simulation and the staging routine; the cube is imaged here
with a plain multiscale ``tclean`` (the imaging stage's own chain is tested elsewhere).
"""

from __future__ import annotations

import pytest

from phangs_operators.routines import postprocess as pp
from phangs_operators.routines.post.casaimage import read_cube

pytestmark = [pytest.mark.casa, pytest.mark.slow]


@pytest.fixture(scope="module")
def imaged_ngc9999(tiny_demo, tmp_path_factory):
    from phangs_operators.casa import casa_session, casatasks
    from phangs_operators.routines import vis

    d = tmp_path_factory.mktemp("sim_post")
    m = tiny_demo.manifest
    t = m["targets"]["ngc9999"]
    ms = tiny_demo.ms
    vis.stage_line_product(
        {"12m": [ms["ngc9999_12m_mosaic.ms"]], "7m": [ms["ngc9999_7m_mosaic.ms"]]}, d / "ngc9999_12m+7m_co21.ms",
        line="co21", vsys_kms=t["vsys_kms"], vwidth_kms=t["vwidth_kms"], channel_kms=25.0, target_field="NGC9999",
        statwt_edge_kms=50.0, workdir=d / "stage",
    )
    with casa_session(d / "img"):
        casatasks().tclean(
            vis=str(d / "ngc9999_12m+7m_co21.ms"), imagename=str(d / "ngc9999_12m+7m_co21"), specmode="cube",
            gridder="mosaic", imsize=[160, 160], cell="0.5arcsec", phasecenter="J2000 12h00m00.0s -30d00m00.0s",
            restfreq="230.538GHz", outframe="LSRK", veltype="radio", weighting="briggs", robust=0.5, pblimit=0.2,
            deconvolver="multiscale", scales=[0, 4, 8, 16], niter=20000, threshold="0.012Jy", cycleniter=500,
            restoringbeam="", interpolation="nearest",
        )
    return d, m


def test_feathering_the_simulated_target(imaged_ngc9999, tiny_demo):
    d, m = imaged_ngc9999
    tp = tiny_demo.data / m["singledish"]["ngc9999"]["path"]
    out = d / "out" / "ngc9999_12m+7m+tp_co21_pbcorr_trimmed_k.fits"
    r = pp.postprocess_cube(d / "ngc9999_12m+7m_co21", out, tp_fits=tp, cutoff=0.25, workdir=d / "post")
    n = r.numbers
    model = m["galaxies"]["ngc9999"]["line_flux_jykms"]
    # the interferometer alone misses most of the extended flux; feathering brings back the TP's
    assert n["interf_flux_jykms"] < 0.4 * model
    assert n["feathered_flux_jykms"] > 2 * n["interf_flux_jykms"]
    assert n["feathered_flux_jykms"] == pytest.approx(n["sd_flux_jykms"], rel=0.05)
    # measured 0.80-0.81 of the model: the footprint (pb >= 0.25, ~26" radius) holds ~97 % of the model,
    # the TP beam spreads ~20 % of it outside, and this tiny interferometer recovers few mid scales
    assert n["feathered_flux_jykms"] > 0.75 * model
    assert out.is_file()
    _, valid = read_cube(r.outputs["final_image"])
    assert valid.any()
