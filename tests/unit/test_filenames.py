import doctest

from phangs_operators import filenames
from phangs_operators.filenames import cube_filename, derived_filename


def test_doctests():
    failures, tried = doctest.testmod(filenames)
    assert tried >= 5 and failures == 0


def test_cleanup_of_empty_parts():
    assert cube_filename("t", "c", "p", ext="") == "t_c_p.fits"
    assert derived_filename("t", "c", "p", res="", ext="_broad_tpeak") == "t_c_p_broad_tpeak.fits"
    assert cube_filename("t", "c", "p", ext="_pbcorr", casa=True, casaext=".pb") == "t_c_p_pbcorr.pb"


