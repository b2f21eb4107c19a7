"""End-to-end throughput and latency of the mesh on this machine.

Starts nats-server and the five services as processes (as `clamor up` does), replays N posts
(the bundled sample, repeated under fresh ids) as fast as the listener may, waits until every
consumer is drained, then reads the span files for per-mention latency from discovery to the
outbox. Prints the figures; the last line is the headline.

``--sync both`` (the default) runs the whole measurement twice, with nats-server fsyncing every
write before its ack (``nats.sync: always``, what `clamor up` uses by default) and with its
two-minute interval (``nats.sync: interval``), and prints both: the price of durability end to end.

``--metrics both`` (the default) runs each of those with metrics off (``telemetry.metrics: false``)
and on (every service serving /metrics, scraped every second as Prometheus would), one after the
other in the same run, and prints the ratio: the price of metrics.

    python bench/mesh_throughput.py --posts 3000 [--sync both|always|interval] [--metrics both|on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nats

from services.cli.live import consumer_lag
from services.cli.mesh import SERVICES, load_mesh_config
from services.cli.probe import probe_all
from services.cli.supervisor import Supervisor
from services.cli.traces import read_spans
from services.shared import subjects
from services.shared.nats_server import free_port

SAMPLE = Path(__file__).resolve().parents[1] / "services" / "cli_data" / "sample_posts.jsonl"


def write_posts(path: Path, count: int) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            post = json.loads(lines[n % len(lines)])
            post["id"] = f"b{n:07d}"
            out.write(json.dumps(post, ensure_ascii=False) + "\n")


def write_config(folder: Path, posts: Path, rate: float, sync: str, metrics: bool) -> Path:
    ports = {name: free_port() for name in SERVICES}
    # With metrics on, Supervisor gives the services consecutive ports from this one.
    telemetry = f"metrics: true, metrics_port: {free_port()}" if metrics else "metrics: false"
    text = f"""
nats: {{url: "nats://127.0.0.1:{free_port()}", sync: {sync}, monitor_port: null}}
telemetry: {{span_dir: spans, log_format: json, log_level: WARNING, {telemetry}}}
listener:
  grpc: {{port: {ports["listener"]}}}
  sources: [{{name: bench, kind: replay, path: "{posts}", rate_per_second: {rate}}}]
triage: {{grpc: {{port: {ports["triage"]}}}, batch_size: 64, batch_wait_ms: 50}}
router: {{grpc: {{port: {ports["router"]}}}, outbox: {{path: outbox.jsonl}}}}
reputation: {{grpc: {{port: {ports["reputation"]}}}}}
notifier:
  grpc: {{port: {ports["notifier"]}}}
  channels: [{{kind: file, name: file, path: notifications.jsonl}}]
"""
    path = folder / "clamor.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def drained(config_path: Path) -> bool:
    config = load_mesh_config(config_path)
    reports = await probe_all(config)
    listener = next(r for r in reports if r.name == "listener")
    if not listener.sources or not all(s.exhausted for s in listener.sources):
        return False
    nc = await nats.connect(servers=config.nats.servers)
    try:
        lag = await consumer_lag(nc)
    finally:
        await nc.close()
    # Every durable must answer: one that timed out on a busy machine is unknown work, not none.
    return len(lag) == len(subjects.ALL_CONSUMERS) and sum(lag.values()) == 0


class Scraper:
    """Reads every /metrics once a second, as a Prometheus server with a 1 s interval would."""

    def __init__(self, urls: list[str]) -> None:
        self._urls = urls
        self._stop = threading.Event()
        self.scrapes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            for url in self._urls:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        answer.read()
                    self.scrapes += 1
                except OSError:
                    continue


@dataclass(frozen=True)
class Result:
    sync: str
    metrics: bool
    scrapes: int
    cases: int
    elapsed_s: float
    latencies_ms: list[float]
    cpu_s: float


def children_cpu_s() -> float:
    """CPU seconds (user and system) of every child process waited for so far: the mesh's, once stopped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(posts_count: int, rate: float, sync: str, metrics: bool) -> Result:
    cpu_before = children_cpu_s()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        posts = folder / "posts.jsonl"
        write_posts(posts, posts_count)
        config_path = write_config(folder, posts, rate, sync, metrics)
        supervisor = Supervisor(load_mesh_config(config_path), config_path, folder)
        urls = [url for name, url in supervisor.scrape_targets().items() if name in SERVICES]
        supervisor.start()
        try:
            while not all(r.serving for r in asyncio.run(probe_all(supervisor.config))):
                time.sleep(0.1)
            with Scraper(urls) as scraper:
                started = time.monotonic()
                while not asyncio.run(drained(config_path)):
                    time.sleep(0.2)
                elapsed = time.monotonic() - started
        finally:
            supervisor.stop()
        spans = read_spans(folder / "spans")
        discovered = {
            s["attributes"].get("clamor.mention.id"): s["start_ns"] for s in spans if s["name"] == "discover bench"
        }
        by_trace = {s["trace_id"]: s["attributes"]["clamor.mention.id"] for s in spans if s["name"] == "discover bench"}
        latencies = [
            (s["end_ns"] - discovered[by_trace[s["trace_id"]]]) / 1e6
            for s in spans
            if s["name"] == "deliver outbox" and s["trace_id"] in by_trace
        ]
        cases = sum(1 for _ in (folder / "outbox.jsonl").open(encoding="utf-8"))
    return Result(
        sync=sync,
        metrics=metrics,
        scrapes=scraper.scrapes,
        cases=cases,
        elapsed_s=elapsed,
        latencies_ms=latencies,
        # The services and nats-server, start-up and shutdown included: the same for both variants
        # but for what metrics add, and far steadier than wall-clock time on a shared machine.
        cpu_s=children_cpu_s() - cpu_before,
    )


def report(result: Result, posts: int) -> None:
    latencies = result.latencies_ms
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    tag = f"[sync {result.sync}, metrics {'on' if result.metrics else 'off'}]"
    scraped = f", {result.scrapes} scrapes of /metrics" if result.metrics else ""
    print(f"{tag} posts: {posts}, cases: {result.cases}, drained in {result.elapsed_s:.1f}s{scraped}")
    print(
        f"{tag} discovery→outbox latency ms: p50 {quantiles[49]:.1f}, "
        f"p95 {quantiles[94]:.1f}, max {max(latencies, default=0.0):.1f}"
    )
    print(f"{tag} throughput: {posts / result.elapsed_s:.0f} mentions/s end to end")
    per_post_ms = result.cpu_s / posts * 1000
    print(f"{tag} CPU: {result.cpu_s:.1f} s for the services and nats-server ({per_post_ms:.2f} ms/post)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=10_000, help="listener publish rate cap, posts/s")
    parser.add_argument(
        "--sync",
        choices=("both", "always", "interval"),
        default="both",
        help="nats-server fsync policy: every write, the two-minute interval, or one run of each",
    )
    parser.add_argument(
        "--metrics",
        choices=("both", "on", "off"),
        default="both",
        help="metrics off, on (served and scraped every second), or one run of each",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each variant this many times, alternating, and compare medians (the spread shows the noise)",
    )
    options = parser.parse_args()
    modes = ("always", "interval") if options.sync == "both" else (options.sync,)
    recording = {"both": (False, True), "on": (True,), "off": (False,)}[options.metrics]
    results = []
    for mode in modes:
        for round_ in range(1, options.repeat + 1):
            for metrics in recording:
                what = f"sync {mode}, metrics {'on' if metrics else 'off'}, round {round_}/{options.repeat}"
                print(f"measuring: {what} ({options.posts} posts)…", flush=True)
                results.append(measure(options.posts, options.rate, mode, metrics))
    for result in results:
        report(result, options.posts)
    rates = ", ".join(
        f"sync {r.sync} metrics {'on' if r.metrics else 'off'} {options.posts / r.elapsed_s:.0f}" for r in results
    )
    print(f"throughput: {rates} mentions/s end to end ({len(SERVICES)} services, 1 nats-server, this machine)")
    for mode in modes:
        off = [r.elapsed_s for r in results if r.sync == mode and not r.metrics]
        on = [r.elapsed_s for r in results if r.sync == mode and r.metrics]
        if off and on:
            cost = 1 - statistics.median(off) / statistics.median(on)
            spread = f"off {min(off):.1f}-{max(off):.1f}s, on {min(on):.1f}-{max(on):.1f}s" if len(off) > 1 else ""
            print(
                f"metrics cost (sync {mode}): {cost:+.1%} of throughput "
                f"(median of {len(on)} on/off pairs in one run; {spread}; target < 5%)"
            )
            cpu_off = statistics.median(r.cpu_s for r in results if r.sync == mode and not r.metrics)
            cpu_on = statistics.median(r.cpu_s for r in results if r.sync == mode and r.metrics)
            extra = cpu_on / cpu_off - 1
            print(f"metrics CPU (sync {mode}): {extra:+.1%} ({cpu_off:.1f} s off, {cpu_on:.1f} s on, medians)")


if __name__ == "__main__":
    main()
