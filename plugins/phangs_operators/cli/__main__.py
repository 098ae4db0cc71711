"""``python -m phangs_operators.cli`` = the ``phangs`` command."""

import sys

from phangs_operators.cli import main

if __name__ == "__main__":
    sys.exit(main())
