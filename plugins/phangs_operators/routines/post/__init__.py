"""Helpers of the post-processing stage (``phangs_operators.routines.postprocess``).

* :mod:`.maths`: the numpy form of every post-processing formula (no CASA), unit-tested;
* :mod:`.fitsheader`: the PHANGS clean-up of exported FITS headers (astropy only);
* :mod:`.casaimage`: small readers of CASA image metadata (casatools, imported lazily).
"""
