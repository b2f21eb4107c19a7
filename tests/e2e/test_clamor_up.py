"""`clamor up` as a user runs it: bundled config and sample, live counts, a clean stop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
import yaml

from services.cli.mesh import CONFIG_NAME, MeshConfig
from services.listener.__main__ import build_watches
from services.shared.config import load_config
from services.shared.nats_server import free_port, port_open
from tests.e2e.mesh import SAMPLE, mention_ids_of, outbox_cases
from tests.e2e.verdicts import expected_verdicts
from tests.support.eventually import eventually

pytestmark = pytest.mark.e2e


def up_env() -> tuple[dict[str, str], list[int]]:
    """Free ports through env overrides, so the test never meets a developer's own `clamor up`."""
    ports = [free_port() for _ in range(6)]
    env = dict(os.environ)
    env["CLAMOR__NATS__URL"] = f"nats://127.0.0.1:{ports[0]}"
    for name, port in zip(("listener", "triage", "router", "reputation", "notifier"), ports[1:], strict=True):
        env[f"CLAMOR__{name.upper()}__GRPC__PORT"] = str(port)
    sources = [{"name": "sample", "kind": "replay", "path": "sample_posts.jsonl", "rate_per_second": 400}]
    env["CLAMOR__LISTENER__SOURCES"] = yaml.safe_dump(sources, default_flow_style=True)
    # nats-server's monitoring, and the first of the five /metrics ports (clamor up counts up from it).
    env["CLAMOR__NATS__MONITOR_PORT"] = str(free_port())
    env["CLAMOR__TELEMETRY__METRICS_PORT"] = str(free_port())
    return env, ports


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode("utf-8"))


def clamor(*args: str) -> list[str]:
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


def sample_complaints() -> tuple[set[str], set[str]]:
    """(the sample's complaints as triage decides them, the borderline ones); the brands' own posts are none."""
    bundled = Path(str(resources.files("services.cli_data").joinpath(CONFIG_NAME)))
    watches = build_watches(load_config(MeshConfig, bundled, environ={}).listener)
    complaints, borderline = expected_verdicts(SAMPLE, "sample", watches=watches)
    return set(complaints), borderline


def test_clamor_up_processes_the_bundled_sample_into_one_case_per_complaint(tmp_path: Path) -> None:
    env, ports = up_env()
    done = subprocess.run(
        clamor("up", "--exit-when-idle", "--timeout", "240"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "wrote the default config" in done.stdout
    complaints, borderline = sample_complaints()
    cases = outbox_cases(tmp_path / ".clamor" / "outbox.jsonl")
    delivered = mention_ids_of(cases)
    # Every complaint in exactly one case (a customer's several posts share one).
    assert len(delivered) == len(set(delivered)) >= len(cases)
    assert set(delivered) - borderline == complaints - borderline
    assert f"outbox: {len(cases)} cases (" in done.stdout
    assert not any(port_open("127.0.0.1", port) for port in ports), "a process outlived clamor up"
    suggestion = re.search(r"clamor trace (\S+)", done.stdout)
    assert suggestion is not None, done.stdout
    drawn = subprocess.run(
        clamor("trace", suggestion.group(1)),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert drawn.returncode == 0, drawn.stderr
    for span in (
        "listener  discover sample",
        "triage  process",
        "reputation  process",
        "router  deliver outbox",
        "notifier  notify",
    ):
        assert span in drawn.stdout


def wait_for_status(folder: Path, env: dict[str, str]) -> str:
    """`clamor status` until every service is ready (it exits 1 before that)."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            clamor("status"), cwd=folder, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode == 0 or time.monotonic() > deadline:
            return done.stdout + done.stderr
        time.sleep(0.5)


def wait_for_notifications(folder: Path, env: dict[str, str]) -> str:
    """`clamor notifications` until the log shows an escalation."""
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run(
            clamor("notifications", "--limit", "5"),
            cwd=folder,
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if "escalated" in done.stdout or time.monotonic() > deadline:
            return done.stdout + done.stderr
        time.sleep(0.5)


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    env, ports = up_env()
    up = subprocess.Popen(clamor("up"), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not all(port_open("127.0.0.1", port) for port in ports):
            assert time.monotonic() < deadline, "mesh did not come up"
            assert up.poll() is None, "clamor up exited early"
            time.sleep(0.2)
        status = wait_for_status(tmp_path, env)
        assert status.count("SERVING") == 5, status
        # Lag and dead letters per stage, as the owning services read them.
        for shown in ("stages", "router-delivery", "dead letters"):
            assert shown in status, status
        base = int(env["CLAMOR__TELEMETRY__METRICS_PORT"])
        for index, name in enumerate(("listener", "triage", "router", "reputation", "notifier")):
            page = scrape(f"http://127.0.0.1:{base + index}/metrics")
            assert f'service_name="{name}"' in page
        assert "jetstream" in scrape(f"http://127.0.0.1:{env['CLAMOR__NATS__MONITOR_PORT']}/varz")
        log = wait_for_notifications(tmp_path, env)
        assert "escalated to escalations" in log
        assert "sent" in log
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
    assert up.returncode == 0, output.decode(errors="replace")
    assert b"stopped." in output
    assert not any(port_open("127.0.0.1", port) for port in ports), "a process outlived clamor up"


def test_clamor_up_reports_an_invalid_config_by_field_and_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("nats:\n  url: nats://127.0.0.1:4222\ntriage:\n  batch_size: lots\n", encoding="utf-8")
    done = subprocess.run(
        clamor("up", "--config", str(config)), cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "triage.batch_size" in done.stderr
    assert "bad.yaml:4" in done.stderr


def nats_server_pids(config_file: Path) -> list[int]:
    """The nats-server processes started with ``config_file``: this test's own, never a neighbour's."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if str(config_file).encode() in argv and any(a.endswith(b"nats-server") for a in argv[:1]):
            pids.append(int(entry.name))
    return pids


def outbox_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) if path.exists() else 0


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds nats-server through /proc")
async def test_a_killed_nats_server_is_restarted_and_the_sample_still_ends_one_case_per_complaint(
    tmp_path: Path,
) -> None:
    env, ports = up_env()
    # Slow enough that most of the sample is still to publish when nats-server dies.
    sources = [{"name": "sample", "kind": "replay", "path": "sample_posts.jsonl", "rate_per_second": 20}]
    env["CLAMOR__LISTENER__SOURCES"] = yaml.safe_dump(sources, default_flow_style=True)
    data = tmp_path / ".clamor"
    config_file = data / "nats-server.conf"
    outbox = data / "outbox.jsonl"
    up = await asyncio.create_subprocess_exec(
        *clamor("up", "--exit-when-idle", "--timeout", "400"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await eventually(lambda: outbox_lines(outbox) > 0, what="the first case in the outbox", within_s=180)
        assert up.returncode is None, "clamor up exited early"
        assert "sync_interval: always" in config_file.read_text(encoding="utf-8")
        [first] = nats_server_pids(config_file)
        os.kill(first, signal.SIGKILL)
        await eventually(
            lambda: [pid for pid in nats_server_pids(config_file) if pid != first] != [],
            what="a new nats-server on the same config",
            within_s=120,
        )
        await eventually(lambda: port_open("127.0.0.1", ports[0]), what="nats-server back on its port", within_s=120)
        output, _ = await asyncio.wait_for(up.communicate(), timeout=420)
    finally:
        if up.returncode is None:
            up.kill()
            await up.communicate()
    text = output.decode(errors="replace")
    assert up.returncode == 0, text
    assert "nats-server exited; restarted it" in text
    complaints, borderline = sample_complaints()
    cases = outbox_cases(outbox)
    delivered = mention_ids_of(cases)
    assert len(delivered) == len(set(delivered)) >= len(cases)
    assert set(delivered) - borderline == complaints - borderline
    assert not any(port_open("127.0.0.1", port) for port in ports), "a process outlived clamor up"
