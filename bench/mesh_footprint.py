"""Memory and CPU of each mesh process while `clamor up` works through its bundled sample.

Runs ``clamor up --exit-when-idle --timeout 300`` in a temporary folder (the embedded default:
nats-server, the five services, about 300 posts replayed) and samples every process of the mesh with
``ps`` until it exits: resident memory, and CPU time from which the busiest window's rate is taken.
These are the figures the Kubernetes requests and limits are set from (docs/deploy.md, "Sizing").
The last line is the headline: peak RSS per process.

    python bench/mesh_footprint.py [--interval 0.5] [--window 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SERVICES = ("listener", "triage", "router", "reputation", "notifier")
NATS = "nats-server"


@dataclass
class Footprint:
    """What one process of the mesh used, sample after sample."""

    name: str
    peak_rss_kib: int = 0
    cpu_s: float = 0.0
    # (wall seconds since start, cumulative CPU seconds), for the busiest window's rate.
    cpu_trace: list[tuple[float, float]] = field(default_factory=list)

    def add(self, at_s: float, rss_kib: int, cpu_s: float) -> None:
        self.peak_rss_kib = max(self.peak_rss_kib, rss_kib)
        self.cpu_s = max(self.cpu_s, cpu_s)
        self.cpu_trace.append((at_s, cpu_s))

    def peak_cores(self, window_s: float) -> float:
        """The highest CPU rate (cores) over any ``window_s`` of the run; ps counts whole seconds."""
        best = 0.0
        for at_start, cpu_start in self.cpu_trace:
            later = [(at, cpu) for at, cpu in self.cpu_trace if at - at_start >= window_s]
            if later:
                at_end, cpu_end = later[0]
                best = max(best, (cpu_end - cpu_start) / (at_end - at_start))
        return best


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    found = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _name(args: str) -> str | None:
    if NATS in args.split(" ", 1)[0]:
        return NATS
    for service in SERVICES:
        if f"services.{service}" in args:
            return service
    return None


def sample(root: int, at_s: float, footprints: dict[str, Footprint]) -> None:
    table = subprocess.run(
        ["ps", "-eo", "pid=,ppid=,rss=,cputimes=,args="], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split(None, 4) for line in table.splitlines()]
    parents = {int(row[0]): int(row[1]) for row in rows if len(row) >= 4}
    mesh = _descendants(root, parents)
    for row in rows:
        if len(row) < 5 or int(row[0]) not in mesh:
            continue
        name = _name(row[4])
        if name is not None:
            footprints.setdefault(name, Footprint(name)).add(at_s, int(row[2]), float(row[3]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--window", type=float, default=5.0, help="seconds over which the peak CPU rate is taken")
    options = parser.parse_args()
    footprints: dict[str, Footprint] = {}
    with tempfile.TemporaryDirectory(prefix="clamor-footprint-") as folder:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        clamor = Path(sys.executable).with_name("clamor")
        started = time.monotonic()
        with subprocess.Popen(
            [str(clamor), "up", "--exit-when-idle", "--timeout", "300"],
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ) as up:
            while up.poll() is None:
                sample(up.pid, time.monotonic() - started, footprints)
                time.sleep(options.interval)
        wall_s = time.monotonic() - started
        if up.returncode != 0:
            print(f"clamor up exited with {up.returncode}", file=sys.stderr)
            return 1
    print(f"clamor up --exit-when-idle: {wall_s:.0f} s, {os.cpu_count()} cores, sampled every {options.interval} s")
    print(f"{'process':<12} {'peak RSS MiB':>12} {'CPU s':>7} {'mean cores':>10} {'peak cores':>10}")
    order = [*SERVICES, NATS]
    for name in order:
        if name not in footprints:
            print(f"{name:<12} not seen")
            continue
        f = footprints[name]
        print(
            f"{name:<12} {f.peak_rss_kib / 1024:>12.0f} {f.cpu_s:>7.0f} {f.cpu_s / wall_s:>10.2f}"
            f" {f.peak_cores(options.window):>10.2f}"
        )
    print(
        "peak RSS MiB: "
        + ", ".join(f"{name} {footprints[name].peak_rss_kib / 1024:.0f}" for name in order if name in footprints)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
