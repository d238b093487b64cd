"""`python -m credd` is the `credd` command."""

import sys

from credd.cli import main

sys.exit(main())
