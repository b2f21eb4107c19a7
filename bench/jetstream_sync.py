"""What ``sync_interval: always`` costs a JetStream publisher on this machine's disk.

deploy/k8s runs nats-server with ``jetstream { sync_interval: always }``: every write is fsynced before
it is acknowledged, so an acknowledged mention survives the servers losing power together. This starts
nats-server twice with the same file-backed stream (R1, 1 KiB messages): once with the default (fsync
every 2 minutes) and once with ``always``, and measures acknowledged publishes one at a time (the
latency a lone publisher sees) and with many in flight (the listener and triage publish in batches).
The last line is the headline: acknowledged publishes per second, in flight, by setting.

    python bench/jetstream_sync.py [--messages 2000] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StorageType, StreamConfig

from services.shared.nats_server import free_port, nats_server_binary, port_open

MODES = {"default": "", "always": "sync_interval: always"}


def start(folder: Path, sync: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = folder / "nats.conf"
    config.write_text(f"port: {port}\njetstream {{\n  store_dir: {folder / 'store'}\n  {sync}\n}}\n", encoding="utf-8")
    server = subprocess.Popen(
        [str(nats_server_binary()), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not port_open("127.0.0.1", port):
        if server.poll() is not None:
            raise SystemExit(f"nats-server exited with {server.returncode}")
        time.sleep(0.05)
    return server, port


async def measure(port: int, messages: int, in_flight: int) -> tuple[list[float], float]:
    nc = await nats.connect(f"nats://127.0.0.1:{port}")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], storage=StorageType.FILE))
    payload = b"x" * 1024
    latencies = []
    for n in range(messages // 4):
        started = time.perf_counter()
        await js.publish("bench.one", payload, headers={"Nats-Msg-Id": f"one-{n}"})
        latencies.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    for first in range(0, messages, in_flight):
        batch = range(first, min(first + in_flight, messages))
        await asyncio.gather(*(js.publish("bench.many", payload, headers={"Nats-Msg-Id": f"many-{n}"}) for n in batch))
    rate = messages / (time.perf_counter() - started)
    await nc.close()
    return latencies, rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    options = parser.parse_args()
    rates: dict[str, float] = {}
    for mode, sync in MODES.items():
        with tempfile.TemporaryDirectory(prefix="clamor-sync-") as folder:
            server, port = start(Path(folder), sync)
            try:
                latencies, rate = asyncio.run(measure(port, options.messages, options.in_flight))
            finally:
                server.terminate()
                server.wait()
        cuts = statistics.quantiles(latencies, n=100)
        rates[mode] = rate
        print(
            f"{mode:>8}: one at a time p50 {cuts[49]:.2f} ms, p99 {cuts[98]:.2f} ms;"
            f" {options.in_flight} in flight {rate:.0f} msg/s"
        )
    print(", ".join(f"{mode} {rate:.0f}" for mode, rate in rates.items()) + " acknowledged publishes/s in flight")
    return 0


if __name__ == "__main__":
    sys.exit(main())
