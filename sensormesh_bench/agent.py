"""`sensormesh bench agent`: the agent's footprint under a Pi's sensor load, and its backlog drain rate.

Two phases, each with the real agent in its own process (`sensormesh agent`)
and simulated sensors (IMU at 100 Hz, environment at 1 Hz, system every 10 s):

1. Steady: after a warm-up, the agent's resident memory (VmRSS, peak over the
   period) and CPU (user + system time over wall time, % of one core), read
   from /proc while it reads and uploads. `rss_mb` is in MB (10^6 bytes), as
   the target is stated; `rss_mib` is the same in MiB, as ps and top count.
   Two baselines measured in the same run put them in proportion: the memory
   of a process that only imports what the agent imports, and the CPU of a
   bare asyncio loop waking at 100 Hz.
2. Drain: a buffer pre-filled with a backlog (as after an outage) is handed
   to a fresh agent, which uploads it while its inputs keep taking new
   readings. The rate is the server's committed sequence over time, polled
   with GetUploadOffset from this process: buffer read + encode + send +
   acknowledge, all done by the agent process.

The ingest endpoint is `--target` (a running ingest service, with
`--device-id` and `--token` of a registered device), or by default a real
`sensormesh ingest` process on a temporary embedded PostgreSQL, started here
(needs the `server` extra), with a device registered for each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensormesh_bench.targets import Target

TARGETS = [
    Target("rss_mb", "<", 60),
    Target("cpu_pct_of_core", "<=", 5),
    Target("drain_readings_per_s", ">=", 50_000),
]

CONFIG = """
device_id = "{device_id}"
[uplink]
  target = "{target}"
  tls = false
[buffer]
  path = "{buffer}"
[[inputs.simulated]]
  kind = "imu"
  interval = "10ms"
[[inputs.simulated]]
  kind = "environment"
  interval = "1s"
[[inputs.simulated]]
  kind = "system"
  interval = "10s"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="steady measurement period (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring (default 5)")
    parser.add_argument("--backlog", type=int, default=500_000, help="readings to drain (default 500,000)")
    parser.add_argument(
        "--target",
        help="host:port of a running ingest service (default: one started here, embedded database)",
    )
    parser.add_argument("--device-id", default="bench-pi", help="a registered device, for --target")
    parser.add_argument("--token", help="the device's token, for --target")


@dataclass
class Endpoint:
    """Where the agent uploads, and as which device."""

    target: str
    description: str
    device_id: str
    token: str


class LocalIngest:
    """A `sensormesh ingest` process on a temporary embedded PostgreSQL, for the default run."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._embedded: Any = None
        self._service: Any = None
        self._url = ""

    async def start(self) -> None:
        try:
            from sensormesh_bench.ingest.phases import IngestProcess
            from sensormesh_core.storage import migrate
            from sensormesh_core.storage.embedded import EmbeddedPostgres
        except ImportError as error:  # an agent-only install (a Pi): measure against a server instead
            raise SystemExit(f"sensormesh bench agent: {error.name} is missing; pass --target") from error
        self._embedded = EmbeddedPostgres(self._folder / "postgres", delete_on_exit=True)
        self._url = await asyncio.to_thread(self._embedded.url, "sensormesh_bench_agent")
        await asyncio.to_thread(migrate.upgrade, self._url)
        self._service = IngestProcess({"SENSORMESH_DATABASE_URL": self._url})
        await self._service.start()

    async def endpoint(self, device_id: str) -> Endpoint:
        """A newly registered device on this ingest service."""
        import asyncpg

        from sensormesh_core.storage.registry import create_device

        conn = await asyncpg.connect(self._url)
        try:
            record, token = await create_device(conn, device_id)
        finally:
            await conn.close()
        description = "sensormesh ingest on an embedded PostgreSQL, same machine"
        return Endpoint(f"127.0.0.1:{self._service.port}", description, record.device_id, token)

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)


async def _stop(process: asyncio.subprocess.Process | None, sig: int = signal.SIGTERM) -> None:
    if process is None or process.returncode is not None:
        return
    process.send_signal(sig)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _start_agent(config: Path, token: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "SENSORMESH_AGENT_TOKEN": token}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "--log-level", "WARNING", "agent", "--config", str(config),
        env=env, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _memory_kib(pid: int) -> dict[str, int]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(status[key].split()[0]) for key in ("VmRSS", "RssAnon", "RssFile")}


class OffsetProbe:
    """Reads the device's committed sequence, as the server sees it."""

    def __init__(self, target: str, device_id: str, token: str) -> None:
        import grpc
        from sensormesh.v1.ingest_pb2_grpc import IngestServiceStub

        self._channel = grpc.aio.insecure_channel(target)
        self._stub = IngestServiceStub(self._channel)
        self._device_id = device_id
        self._metadata = (("authorization", f"Bearer {token}"),)

    async def committed(self) -> int:
        from sensormesh.v1.ingest_pb2 import GetUploadOffsetRequest

        request = GetUploadOffsetRequest(device_id=self._device_id)
        response = await self._stub.GetUploadOffset(request, metadata=self._metadata, timeout=10)
        return int(response.committed_sequence)

    async def close(self) -> None:
        await self._channel.close()


# What every agent process imports before it does anything: the floor its memory cannot go below.
_IMPORT_FLOOR = """
import sys
import gateway_agent.agent, gateway_agent.agent_command, gateway_agent.config, gateway_agent.inputs.simulated
from sensormesh_core.telemetry import configure_telemetry
configure_telemetry("floor", set_global=False)
print("ready", flush=True)
sys.stdin.read()
"""


# What waking up 100 times a second costs a bare asyncio process on this machine: the floor
# of a 100 Hz polled sensor's CPU, whatever the agent does per reading.
_BARE_LOOP = """
import asyncio, sys, time
async def main(seconds):
    loop = asyncio.get_running_loop()
    cpu, wall, tick = time.process_time(), time.perf_counter(), loop.time()
    while time.perf_counter() - wall < seconds:
        tick += 0.01
        await asyncio.sleep(tick - loop.time())
    print(100 * (time.process_time() - cpu) / (time.perf_counter() - wall))
asyncio.run(main(float(sys.argv[1])))
"""


async def _bare_loop_cpu_pct(seconds: float) -> float:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BARE_LOOP, str(seconds), stdout=asyncio.subprocess.PIPE
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    return round(float(stdout), 2)


async def _import_floor_kib() -> int:
    """VmRSS of a process that imports what the agent imports and does nothing else (the baseline)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _IMPORT_FLOOR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        await asyncio.wait_for(process.stdout.readline(), 60)
        return _memory_kib(process.pid)["VmRSS"]
    finally:
        process.kill()
        await process.wait()


async def _until_uploading(probe: OffsetProbe, before: int, agent: asyncio.subprocess.Process) -> None:
    """Wait (at most 60 s) until the agent's first batch is committed: it has started and connected."""
    async with asyncio.timeout(60):
        while await probe.committed() <= before:
            if agent.returncode is not None:
                raise SystemExit("sensormesh bench agent: the agent exited while starting")
            await asyncio.sleep(0.05)  # polling the server's mark: the agent's only observable progress


async def _steady(args: argparse.Namespace, endpoint: Endpoint, folder: Path) -> dict[str, Any]:
    config = folder / "steady.toml"
    config.write_text(
        CONFIG.format(device_id=endpoint.device_id, target=endpoint.target, buffer=folder / "steady.sqlite3")
    )
    probe = OffsetProbe(endpoint.target, endpoint.device_id, endpoint.token)
    before = await probe.committed()
    agent = await _start_agent(config, endpoint.token)
    try:
        await _until_uploading(probe, before, agent)
        await asyncio.sleep(args.warmup)  # a fixed warm-up period is the measurement's definition
        start_cpu, start_wall, start_mark = _cpu_seconds(agent.pid), time.monotonic(), await probe.committed()
        peak: dict[str, int] = {}
        while time.monotonic() - start_wall < args.seconds:
            await asyncio.sleep(1.0)
            for key, value in _memory_kib(agent.pid).items():
                peak[key] = max(peak.get(key, 0), value)
        cpu, wall = _cpu_seconds(agent.pid) - start_cpu, time.monotonic() - start_wall
        end_mark = await probe.committed()
    finally:
        await _stop(agent)
        await probe.close()
    floor = await _import_floor_kib()
    bare_cpu = await _bare_loop_cpu_pct(min(args.seconds, 10.0))
    return {
        "rss_mb": round(peak["VmRSS"] * 1024 / 1e6, 1),
        "rss_mib": round(peak["VmRSS"] / 1024, 1),
        "rss_import_floor_mb": round(floor * 1024 / 1e6, 1),
        "rss_over_import_floor_mb": round((peak["VmRSS"] - floor) * 1024 / 1e6, 1),
        "rss_anon_mb": round(peak["RssAnon"] * 1024 / 1e6, 1),
        "cpu_pct_of_core": round(100 * cpu / wall, 2),
        "cpu_pct_bare_100hz_asyncio_loop": bare_cpu,
        "steady_seconds": round(wall, 1),
        "steady_uploaded_readings_per_s": round((end_mark - start_mark) / wall, 1),
    }


async def _prefill(path: Path, count: int) -> int:
    """A backlog of `count` simulated IMU readings from the last hours; returns the file's size."""
    from gateway_agent.buffer import Buffer, BufferSettings
    from gateway_agent.inputs.simulated import Settings, Simulated
    from gateway_agent.scheduler import ReadingSink
    from sensormesh_core.telemetry import configure_telemetry

    start_ns = time.time_ns() - count * 10_000_000
    ticks = iter(range(start_ns, start_ns + count * 10_000_000, 10_000_000))
    sensor = Simulated(Settings(kind="imu", sensor="sim-imu"), clock=lambda: next(ticks))
    buffer = await Buffer.open(BufferSettings(path=path, commit_max_readings=50_000))
    sink = ReadingSink(buffer, configure_telemetry("bench", set_global=False).meter("bench"))
    for done in range(0, count, 10_000):
        for _ in range(min(10_000, count - done)):
            sink.emit("sim-imu", await sensor.read())
        await buffer.flush()
    await buffer.close()
    return (await asyncio.to_thread(path.stat)).st_size


async def _drain(args: argparse.Namespace, endpoint: Endpoint, folder: Path) -> dict[str, Any]:
    buffer_path = folder / "backlog.sqlite3"
    size = await _prefill(buffer_path, args.backlog)
    config = folder / "drain.toml"
    config.write_text(CONFIG.format(device_id=endpoint.device_id, target=endpoint.target, buffer=buffer_path))
    probe = OffsetProbe(endpoint.target, endpoint.device_id, endpoint.token)
    base = await probe.committed()  # a fresh buffer is numbered after the server's mark
    agent = await _start_agent(config, endpoint.token)
    try:
        first_time = first_mark = None
        deadline = time.monotonic() + 120 + args.backlog / 5_000
        while time.monotonic() < deadline:
            mark = await probe.committed()
            now = time.monotonic()
            if first_mark is None and mark > base:
                first_time, first_mark = now, mark
            if mark >= base + args.backlog:
                break
            await asyncio.sleep(0.02)  # polling the server's mark is the measurement
        else:
            raise SystemExit("sensormesh bench agent: the backlog did not drain in time")
    finally:
        await _stop(agent)
        await probe.close()
    assert first_time is not None and first_mark is not None
    seconds = now - first_time
    return {
        "drain_readings_per_s": round((base + args.backlog - first_mark) / seconds) if seconds > 0 else 0,
        "drain_seconds": round(seconds, 2),
        "backlog_readings": args.backlog,
        "buffer_bytes_per_reading": round(size / args.backlog, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.target and not args.token:
        raise SystemExit(
            "sensormesh bench agent: --target needs --token (and --device-id) of a registered device"
        )
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-agent-") as tmp:
        folder = Path(tmp)
        local = None if args.target else LocalIngest(folder)
        try:
            if local is not None:
                await local.start()
            for phase in (_steady, _drain):
                if local is not None:
                    endpoint = await local.endpoint(f"bench-pi-{phase.__name__.strip('_')}")
                else:
                    endpoint = Endpoint(
                        args.target, f"ingest service at {args.target}", args.device_id, args.token
                    )
                figures |= await phase(args, endpoint, folder)
                figures["ingest"] = endpoint.description
        finally:
            if local is not None:
                await local.stop()
    return figures
