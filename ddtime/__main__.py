"""``python -m ddtime ...``: the command line of :mod:`ddtime.driver.commands`."""
import sys

from ddtime.driver.commands import main

sys.exit(main())
