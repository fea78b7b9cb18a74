"""``python -m ddtime ...``: the command line of :mod:`ddtime.cli`."""
import sys

from ddtime.cli import main

sys.exit(main())
