"""Wall time and peak memory of the CPU demo (``scripts/run_demo_cpu.sh``), every process included.

The demo is a process tree (driver, Ray's GCS and raylet, TaskRunner, actor, rollout server, agent-loop and
reward workers). This samples the memory of the whole tree every second as the sum of each process's
proportional set size (PSS: shared pages such as the torch libraries split between the processes mapping
them), which is what the machine has to provide; the summed RSS, which counts shared pages once per
process, is printed as an upper bound.

Run: ``python benchmarks/demo_footprint.py [-- extra args for run_demo_cpu.sh]`` (environment variables such
as STEPS, MODE, WORK_DIR pass through). Prints one table. :func:`run_measured` is the sampler on its own, which
``barrier_learning.py`` uses for each arm.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "run_demo_cpu.sh"


def tree_memory(root: psutil.Process) -> tuple[int, int, list[tuple[int, str]]]:
    """(Σ PSS, Σ RSS, [(PSS, process title)]) in bytes over the process and all its descendants."""
    pss = rss = 0
    per_process = []
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            title = " ".join(process.cmdline())[:60] or process.name()
        except psutil.Error:  # exited between listing and reading
            continue
        pss, rss = pss + info.pss, rss + info.rss
        per_process.append((info.pss, title))
    return pss, rss, per_process


@dataclass(frozen=True)
class Footprint:
    """A finished command's exit code, wall time and peak memory of its process tree (bytes)."""

    returncode: int
    wall_s: float
    peak_pss: int
    peak_rss: int
    at_peak: list[tuple[int, str]]  # (PSS, process title) of each process at the PSS peak


def run_measured(command: list[str], interval_s: float = 1.0, **popen: Any) -> Footprint:
    """Run ``command`` (``popen``: ``subprocess.Popen`` keywords) to its end, sampling its tree every ``interval_s``.

    Reading every process's PSS costs some CPU (it walks ``/proc/<pid>/smaps``): sample less often beside a timed run.
    """
    start = time.monotonic()
    child = subprocess.Popen(command, **popen)
    root = psutil.Process(child.pid)
    peak_pss = peak_rss = 0
    at_peak: list[tuple[int, str]] = []
    while child.poll() is None:
        try:
            pss, rss, per_process = tree_memory(root)
        except psutil.NoSuchProcess:
            break
        if pss > peak_pss:
            peak_pss, at_peak = pss, per_process
        peak_rss = max(peak_rss, rss)
        time.sleep(interval_s)
    returncode = child.wait()
    return Footprint(returncode, time.monotonic() - start, peak_pss, peak_rss, at_peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_args", nargs="*", help="passed to run_demo_cpu.sh")
    args = parser.parse_args(argv)
    demo = run_measured(["bash", str(SCRIPT), *args.demo_args], stdout=sys.stderr, env=dict(os.environ))
    print("| demo setting | wall time | peak memory (Σ PSS) | Σ RSS (upper bound) | exit code |")
    print("|---|---:|---:|---:|---:|")
    shown = ("WORLD", "STEPS", "MODE", "GUIDED_CLIP", "N", "BATCH")  # unset: the script's defaults
    setting = " ".join(f"{name}={os.environ[name]}" for name in shown if name in os.environ) or "defaults"
    gib = 2**30
    print(
        f"| {setting} | {demo.wall_s / 60:.1f} min | {demo.peak_pss / gib:.1f} GiB | {demo.peak_rss / gib:.1f} GiB "
        f"| {demo.returncode} |"
    )
    print("\nlargest processes at the peak (PSS):")
    for pss, title in sorted(demo.at_peak, reverse=True)[:8]:
        print(f"  {pss / gib:5.2f} GiB  {title}")
    return demo.returncode


if __name__ == "__main__":
    sys.exit(main())
