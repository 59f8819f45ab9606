"""How long `comfy-curator demo` takes, as docs/operations.md quotes it: the whole command, from
starting Python to its exit, on the simulated ComfyUI with the default options (3 runs, N = 2,
k = 3, 0.3 s per prompt), its output kept quiet and its files in a temp folder.

Also printed: when the command first wrote a line (what the person sees first) and the demo's
own summary line ("36 jobs in … s", counted from the demo's start, after Python has loaded).

Usage: python benchmarks/demo.py [--repeat 1]
Last line: demo_seconds=<float> jobs=<int>
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = Path(sys.executable).parent / "comfy-curator"
SUMMARY = re.compile(r"^(\d+) jobs in ([\d.]+) s;", re.MULTILINE)


def run_once() -> tuple[float, float, int, float]:
    """Seconds to the first line, seconds in all, jobs, and the demo's own seconds."""
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as folder:
        started = time.monotonic()
        proc = subprocess.Popen([str(COMMAND), "demo", "--data-dir", folder],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=folder)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        first_at = time.monotonic() - started
        rest = proc.stdout.read()
        if proc.wait() != 0 or not first:
            raise SystemExit(f"comfy-curator demo failed (exit {proc.returncode})")
        total = time.monotonic() - started
    found = SUMMARY.search(first + rest)
    if found is None:
        raise SystemExit("comfy-curator demo printed no 'N jobs in S s' line")
    return first_at, total, int(found.group(1)), float(found.group(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    results = [run_once() for _ in range(args.repeat)]
    for first_at, total, jobs, own in results:
        print(f"first line after {first_at:.1f} s; {jobs} jobs; demo's own figure {own:.1f} s; "
              f"command {total:.1f} s")
    total = statistics.median(r[1] for r in results)
    print(f"demo_seconds={total:.1f} jobs={results[0][2]}")


if __name__ == "__main__":
    main()
