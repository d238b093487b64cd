"""`make bench`: run every benchmark in this directory, one after another.

Each bench prints its own table with ratios to the floors (a bare Python
start, a raw msgspec echo) and to peers where they are installed. Benches are
not tests: they measure, they do not assert.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("vault_bench.py", "client_bench.py", "scripting_bench.py", "run_bench.py",
         "scan_bench.py", "tui_bench.py", "mount_bench.py", "lifecycle_bench.py",
         "grants_bench.py")


def main() -> int:
    failed = []
    for name in ORDER:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
