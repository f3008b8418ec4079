"""Print the wall time of each pipeline stage, slowest first, from a `dvc repro` log.

With ``--run`` the script runs ``dvc repro --force`` itself (every stage, whatever
is cached) and keeps its output in ``--log``; without it, it reads an existing
log. A stage's time runs from DVC's "Running stage" line to the next one, so it
includes DVC's own hashing and caching of that stage's outputs. The "finished
in" figure that the stage script logs itself is printed beside it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

RUNNING = re.compile(r"Running stage '([^']+)'")
FINISHED = re.compile(r"stage \S+: finished in ([0-9.]+) s")


def run_and_log(log_path: Path, targets: list[str]) -> None:
    """Run ``dvc repro --force`` and write each output line prefixed with its time since the start."""
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(["dvc", "repro", "--force", *targets], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:
            log.write(f"{time.perf_counter() - start:10.2f} {line}")
            log.flush()
        log.write(f"{time.perf_counter() - start:10.2f} END\n")
        if process.wait() != 0:
            sys.exit(f"dvc repro failed with exit code {process.returncode}; see {log_path}")


def parse(log_path: Path) -> tuple[list[dict], float]:
    """Return one row per stage (name, wall seconds, the stage's own seconds) and the total wall time."""
    rows, current, last_time = [], None, 0.0
    for line in log_path.read_text(encoding="utf-8").splitlines():
        stamp, _, text = line.strip().partition(" ")
        try:
            now = float(stamp)
        except ValueError:
            sys.exit(f"{log_path}: line without a time stamp; make the log with --run: {line[:80]!r}")
        last_time = now
        # tqdm redraws with carriage returns: look at the whole line.
        if match := RUNNING.search(text):
            if current:
                current["wall"] = now - current["start"]
            current = {"stage": match.group(1), "start": now, "own": None}
            rows.append(current)
        elif (match := FINISHED.search(text)) and current:
            current["own"] = float(match.group(1))
    if current:
        current["wall"] = last_time - current["start"]
    return rows, last_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="run `dvc repro --force` first (takes the pipeline's time)")
    parser.add_argument("--log", type=Path, default=Path("benchmarks/stage_times.log"),
                        help="log file written by --run and read afterwards (default: %(default)s)")
    parser.add_argument("targets", nargs="*", help="stages to reproduce with --run (default: all)")
    args = parser.parse_args()

    if args.run:
        run_and_log(args.log, args.targets)
    if not args.log.exists():
        sys.exit(f"{args.log}: log not found; run with --run to make it")
    rows, total = parse(args.log)
    if not rows:
        sys.exit(f"{args.log}: no \"Running stage\" lines; was it made by `dvc repro`?")

    print(f"{'stage':34} {'wall s':>8} {'own s':>8} {'share':>6}")
    for row in sorted(rows, key=lambda r: -r["wall"]):
        own = f"{row['own']:8.1f}" if row["own"] is not None else f"{'-':>8}"
        print(f"{row['stage']:34} {row['wall']:8.1f} {own} {100 * row['wall'] / total:5.1f}%")
    print(f"{'total':34} {total:8.1f}")
    slowest = sorted(rows, key=lambda r: -r["wall"])[:3]
    print("slowest: " + ", ".join(f"{r['stage']} ({r['wall']:.0f} s)" for r in slowest))


if __name__ == "__main__":
    main()
