"""``python -m skerry`` is the ``skerry`` command."""

import sys

from skerry.cli import main

sys.exit(main())
