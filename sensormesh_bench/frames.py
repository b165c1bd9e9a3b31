"""`sensormesh bench frames`: camera frames stored per second, the agent's footprint with a camera,
and the latency from capture to a live view.

Against `sensormesh ingest` and `sensormesh query` in child processes on a
temporary migrated database (embedded PostgreSQL, or a new database on
SENSORMESH_DATABASE_URL):

1. Throughput: `--cameras` devices (10) each upload 640x480 JPEGs from the
   simulated camera (drawn once, then sent as fast as ingest commits them,
   in batches of `--batch` frames, each device on its own UploadFrames
   stream) for `--seconds`; the figure is frames committed per second (and
   MB/s), with ingest's CPU. The per-device frame rate limit is lifted for
   this phase: it measures what the storage path takes, not the limit.
2. Live: the same cameras take a frame a second each (paced, capture time
   stamped as the frame is made) while a WatchFrames subscriber per device
   (through the query process) receives them; latency is receive time minus
   capture time, p50 and p99 over every frame.
3. Agent: the real `sensormesh agent` process with the agent bench's
   simulated sensors (IMU 100 Hz, environment 1 Hz, system 10 s), once
   without and once with a simulated camera at 1 frame/s: CPU (% of one
   core) and peak resident memory of each, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from sensormesh.v1 import frame_pb2, frame_pb2_grpc, ingest_pb2, ingest_pb2_grpc

from gateway_agent.inputs.camera_simulated import SimulatedCamera
from sensormesh_bench.agent import CONFIG as AGENT_CONFIG
from sensormesh_bench.cpu import process_cpu
from sensormesh_bench.ingest.phases import IngestProcess
from sensormesh_bench.query.stack import bench_database
from sensormesh_bench.targets import Target
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key
from sensormesh_core.storage.registry import create_device

TARGETS = [
    Target("frames_per_s", ">=", 100),  # 10 cameras at ingest's default 10 frames/s each
    Target("watch_latency_p99_ms", "<=", 500),
    Target("agent_camera_cpu_pct_of_core", "<=", 5),  # the agent bench's targets, with a camera
    Target("agent_camera_rss_mb", "<", 60),
]
_QUERY_LISTENING = re.compile(r"event=query_serving .*port=(\d+)")
CAMERA_TOML = """
[[inputs.camera]]
  source = "simulated"
  name = "bench-cam"
  interval = "1s"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cameras", type=int, default=10, help="simulated cameras, one device each (default 10)"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase's measured time (default 20)")
    parser.add_argument("--batch", type=int, default=4, help="frames per upload batch (default 4)")
    parser.add_argument("--warmup", type=float, default=5.0, help="agent phase warm-up (default 5)")


class QueryProcess:
    """`sensormesh query` in a child process, on a free port."""

    def __init__(self, env: dict[str, str]) -> None:
        self._env = {**os.environ, **env, "SENSORMESH_QUERY_LISTEN": "127.0.0.1:0"}
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sensormesh_cli", "query", env=self._env, stderr=asyncio.subprocess.PIPE
        )
        assert self.process.stderr is not None
        async with asyncio.timeout(60):
            while not self.port:
                line = (await self.process.stderr.readline()).decode()
                if not line:
                    raise RuntimeError("sensormesh query exited while starting")
                if match := _QUERY_LISTENING.search(line):
                    self.port = int(match.group(1))
        asyncio.create_task(self._discard())  # noqa: RUF006 - ends with the process's stderr

    async def _discard(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 60)


def _frame(jpeg: bytes, sequence: int, camera: str) -> frame_pb2.Frame:
    frame = frame_pb2.Frame(
        camera=camera, sequence=sequence, content_type="image/jpeg", width=640, height=480, data=jpeg
    )
    frame.capture_time.FromNanoseconds(time.time_ns())
    return frame


async def _upload(target: str, device: str, token: str, jpeg: bytes, seconds: float, batch: int) -> int:
    """Upload frames as fast as they commit for `seconds`, on streams of 50 batches; returns frames sent."""
    metadata = (("authorization", f"Bearer {token}"),)
    sent = 0
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while time.monotonic() < deadline:

            async def batches() -> AsyncIterator[ingest_pb2.UploadFramesRequest]:
                nonlocal sent
                for _ in range(50):
                    if time.monotonic() >= deadline:
                        return
                    frames = [_frame(jpeg, sent + i + 1, "bench-cam") for i in range(batch)]
                    yield ingest_pb2.UploadFramesRequest(
                        device_id=device, first_sequence=sent + 1, last_sequence=sent + batch, frames=frames
                    )
                    sent += batch

            await stub.UploadFrames(batches(), metadata=metadata, timeout=seconds + 60)
    return sent


async def _paced(target: str, device: str, token: str, jpeg: bytes, seconds: float, first: int) -> None:
    """One frame a second, each on its own short stream, as an agent at 1 frame/s sends them."""
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        for index in range(int(seconds)):
            started = time.monotonic()
            frame = _frame(jpeg, first + index, "bench-cam")

            async def one(frame: frame_pb2.Frame = frame) -> AsyncIterator[ingest_pb2.UploadFramesRequest]:
                yield ingest_pb2.UploadFramesRequest(
                    device_id=device,
                    first_sequence=frame.sequence,
                    last_sequence=frame.sequence,
                    frames=[frame],
                )

            await stub.UploadFrames(one(), metadata=metadata, timeout=30)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def _watch(query: str, key: str, device: str, expected: int, latencies: list[float]) -> None:
    async with grpc.aio.insecure_channel(query, interceptors=aio_interceptors(key)) as channel:
        feed = frame_pb2_grpc.FrameServiceStub(channel).WatchFrames(
            frame_pb2.WatchFramesRequest(device_id=device)
        )
        await feed.initial_metadata()
        got = 0
        async for message in feed:
            now = time.time_ns()
            for frame in message.frames:
                latencies.append((now - frame.capture_time.ToNanoseconds()) / 1e6)
                got += 1
            if got >= expected:
                feed.cancel()
                return


async def _devices(url: str, count: int) -> tuple[list[tuple[str, str]], str]:
    conn = await asyncpg.connect(url)
    try:
        devices = []
        for index in range(count):
            record, token = await create_device(conn, f"bench-cam-{index}")
            devices.append((record.device_id, token))
        _, key = await create_key(conn, "bench-frames", 1, creator=LOCAL_CREATOR)
        return devices, key
    finally:
        await conn.close()


async def _throughput(
    args: argparse.Namespace, ingest: IngestProcess, devices: list[tuple[str, str]], jpeg: bytes
) -> dict[str, Any]:
    target = f"127.0.0.1:{ingest.port}"
    cpu = process_cpu(ingest.pid) or 0.0
    started = time.monotonic()
    sent = await asyncio.gather(*(_upload(target, d, t, jpeg, args.seconds, args.batch) for d, t in devices))
    wall = time.monotonic() - started
    frames = sum(sent)
    return {
        "frames_per_s": round(frames / wall, 1),
        "frame_megabytes_per_s": round(frames * len(jpeg) / wall / 1e6, 2),
        "frame_bytes": len(jpeg),
        "ingest_cpu_pct_of_core": round(100 * ((process_cpu(ingest.pid) or 0.0) - cpu) / wall, 1),
        "_next_sequence": [n + 1 for n in sent],
    }


async def _live(
    args: argparse.Namespace, ingest: IngestProcess, query: QueryProcess, devices: list[tuple[str, str]],
    key: str, jpeg: bytes, first: list[int],
) -> dict[str, Any]:  # fmt: skip
    latencies: list[float] = []
    expected = int(args.seconds)
    watchers = [
        asyncio.create_task(_watch(f"127.0.0.1:{query.port}", key, d, expected, latencies))
        for d, _ in devices
    ]
    await asyncio.sleep(1.0)  # subscribed before the first frame
    target = f"127.0.0.1:{ingest.port}"
    await asyncio.gather(
        *(_paced(target, d, t, jpeg, args.seconds, f) for (d, t), f in zip(devices, first, strict=True))
    )
    await asyncio.wait_for(asyncio.gather(*watchers), 30)
    ordered = sorted(latencies)
    return {
        "watch_frames": len(ordered),
        "watch_latency_p50_ms": round(statistics.median(ordered), 1),
        "watch_latency_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
    }


def _memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _agent(
    args: argparse.Namespace, target: str, device: str, token: str, folder: Path, camera: bool
) -> tuple[float, float]:
    """(CPU % of a core, peak RSS MB) of a real agent process with the agent bench's sensors."""
    config = folder / f"agent-{camera}.toml"
    text = AGENT_CONFIG.format(device_id=device, target=target, buffer=folder / f"agent-{camera}.sqlite3")
    config.write_text(text + (CAMERA_TOML if camera else ""))
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "--log-level", "WARNING", "agent", "--config", str(config),
        env={**os.environ, "SENSORMESH_AGENT_TOKEN": token}, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(args.warmup)  # a fixed warm-up is the measurement's definition
        cpu, started, peak = process_cpu(agent.pid) or 0.0, time.monotonic(), 0
        while time.monotonic() - started < args.seconds:
            await asyncio.sleep(1.0)
            peak = max(peak, _memory_kib(agent.pid))
        used = (process_cpu(agent.pid) or 0.0) - cpu
        return round(100 * used / (time.monotonic() - started), 2), round(peak * 1024 / 1e6, 1)
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 60)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    camera = SimulatedCamera("bench-cam", 640, 480, 85)
    camera.open()
    jpeg = camera.capture().data
    figures: dict[str, Any] = {"cameras": args.cameras, "frame_size": "640x480 JPEG"}
    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-frames-") as tmp:
        folder = Path(tmp)
        async with bench_database(folder / "postgres") as url:
            env = {
                "SENSORMESH_DATABASE_URL": url,
                "SENSORMESH_INGEST_FRAME_RATE": "1000000",
                "SENSORMESH_INGEST_FRAME_BURST": "1000000",
            }
            ingest, query = IngestProcess(env), QueryProcess({"SENSORMESH_DATABASE_URL": url})
            await ingest.start()
            await query.start()
            try:
                devices, key = await _devices(url, args.cameras)
                through = await _throughput(args, ingest, devices, jpeg)
                first = through.pop("_next_sequence")
                figures |= through
                figures |= await _live(args, ingest, query, devices, key, jpeg, first)
                agents, _ = await _devices_named(url, ["bench-agent-base", "bench-agent-camera"])
                target = f"127.0.0.1:{ingest.port}"
                base = await _agent(args, target, *agents[0], folder, camera=False)
                with_camera = await _agent(args, target, *agents[1], folder, camera=True)
                figures |= {
                    "agent_cpu_pct_of_core": base[0],
                    "agent_rss_mb": base[1],
                    "agent_camera_cpu_pct_of_core": with_camera[0],
                    "agent_camera_rss_mb": with_camera[1],
                    "agent_camera_extra_cpu_pct": round(with_camera[0] - base[0], 2),
                    "agent_camera_extra_rss_mb": round(with_camera[1] - base[1], 1),
                }
            finally:
                await query.stop()
                await ingest.stop()
    return figures


async def _devices_named(url: str, names: list[str]) -> tuple[list[tuple[str, str]], None]:
    conn = await asyncpg.connect(url)
    try:
        made = [await create_device(conn, name) for name in names]
        return [(record.device_id, token) for record, token in made], None
    finally:
        await conn.close()
