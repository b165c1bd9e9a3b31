"""`python -m sensormesh_core` is the `sensormesh` command."""

import sys

from sensormesh_core.cli import main

sys.exit(main())
