"""Exception families of phangs-airflow.

Each names the file, line or object at fault in its message; the ``phangs`` CLI turns
any :class:`PhangsError` into one clear line and exit code 1.
"""

from __future__ import annotations


class PhangsError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class KeyFileError(PhangsError):
    """A key file is missing, malformed or inconsistent."""


class SimulationError(PhangsError):
    """The test-data simulator was given impossible parameters."""


class StagingError(PhangsError):
    """A measurement set is missing, corrupt or does not cover what is asked."""


class ImagingError(PhangsError):
    """Imaging failed or was given inconsistent inputs."""


class CubeError(PhangsError):
    """A FITS cube is not what a routine needs (no beam, no spectral axis, all NaN...)."""


class StoreError(PhangsError):
    """The product store or the catalog failed or was misconfigured."""
