"""`python -m sensormesh_cli` is the `sensormesh` command."""

import sys

from sensormesh_cli.main import main

sys.exit(main())
