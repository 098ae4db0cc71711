"""phangs_operators: the PHANGS-ALMA imaging pipeline as reusable Airflow operators.

Layers (one direction of dependency):

* :mod:`phangs_operators.keys` - PHANGS key files -> a validated project model;
* :mod:`phangs_operators.routines` - pure routines (files in, files out; CASA lives here);
* :mod:`phangs_operators.operators` - thin Airflow operators wrapping one routine each;
* :mod:`phangs_operators.stores` - product store (S3 / local folder) and catalog;
* :mod:`phangs_operators.dag_factory` - one DAG per target from a key set;
* :mod:`phangs_operators.cli` - the ``phangs`` command.

Importing this package imports neither Airflow nor CASA.
"""

__version__ = "0.1.0"
