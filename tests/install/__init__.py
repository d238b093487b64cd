"""What a new user and CI run: make run, make install-user, the setup scripts, coverage."""

import os

#: The real pip cache, read at import (before the fixtures move HOME): installs come from it.
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pip")
