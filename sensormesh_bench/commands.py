"""`sensormesh bench commands`: how fast a command goes round, under ingest load, and how fast a
backlog of queued commands drains when agents come back.

Both phases run against `sensormesh ingest` and `sensormesh control` in child processes on a
temporary embedded PostgreSQL (or `--database-url`).

- ping round trip: a real `sensormesh agent` process (no inputs, commands on) is connected;
  a quarter of `--pings` are timed idle (the baseline), then, once the load has run for 2 s,
  `--pings` times, one after another, SendCommand("ping") is called on the control service and
  WatchCommands follows the command until SUCCEEDED; the time from before SendCommand to that
  answer is one round trip. Meanwhile a client process uploads the bench fleet's readings at
  `--load` samples/s (paced, batch by batch, over real UploadReadings streams); the load actually
  reached is reported beside the latencies.
- offline delivery: `--offline-devices` devices advertise their commands and go away;
  `--offline-commands` pings are queued for them (spread evenly); then every device connects
  with the agent's own command link (gateway_agent.commands.link, each with its SQLite journal
  in a temporary folder, in this process) and the time until every command is SUCCEEDED is
  measured.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from sensormesh.v1 import command_pb2, command_pb2_grpc

from sensormesh_bench import workload
from sensormesh_bench.commands_load import LoadJob, run_load
from sensormesh_bench.services import ServiceProcess, services
from sensormesh_bench.targets import Target
from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.storage import migrate
from sensormesh_core.storage.api_keys import LOCAL_CREATOR, create_key
from sensormesh_core.storage.embedded import EmbeddedPostgres
from sensormesh_core.storage.registry import create_device

TARGETS = [
    Target("ping_p99_ms", "<=", 100),
    Target("offline_delivered_ratio", ">=", 1.0),
    Target("load_ratio", ">=", 0.95),
]
SUCCEEDED = command_pb2.COMMAND_STATE_SUCCEEDED
WARM_UP_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", help="a migrated database to use (default: a temporary embedded one)"
    )
    parser.add_argument("--pings", type=int, default=200, help="ping round trips to time (default 200)")
    parser.add_argument(
        "--load", type=int, default=50_000, help="ingest load in samples/s meanwhile (default 50000; 0: none)"
    )
    parser.add_argument(
        "--load-devices", type=int, default=8, help="gateways the load is spread over (default 8)"
    )
    parser.add_argument(
        "--offline-devices", type=int, default=100, help="agents away while commands queue (default 100)"
    )
    parser.add_argument(
        "--offline-commands", type=int, default=1000, help="commands queued for them (default 1000)"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sensormesh-bench-commands-") as tmp:
        embedded = None
        if args.database_url:
            url = args.database_url
        else:
            embedded = EmbeddedPostgres(Path(tmp) / "pg", delete_on_exit=True)
            url = await asyncio.to_thread(embedded.url, "sensormesh_bench")
            await asyncio.to_thread(migrate.upgrade, url)
        try:
            async with services(url, Path(tmp)) as (ingest, control):
                key = await _admin_key(url)
                figures = await _pings(args, url, ingest, control, key, Path(tmp))
                figures |= await _offline(args, url, ingest, control, key, Path(tmp))
                return figures
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)


async def _admin_key(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        _, key = await create_key(conn, "bench-commands", 3, creator=LOCAL_CREATOR)
    finally:
        await conn.close()
    return key


async def _devices(url: str, prefix: str, count: int) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        made = []
        for number in range(count):
            record, token = await create_device(conn, f"{prefix}-{number}")
            made.append((record.device_id, token))
        return made
    finally:
        await conn.close()


# -- ping under load -------------------------------------------------------------------------------


async def _pings(
    args: argparse.Namespace,
    url: str,
    ingest: ServiceProcess,
    control: ServiceProcess,
    key: str,
    folder: Path,
) -> dict[str, Any]:
    ((device_id, token),) = await _devices(url, "bench-pinger", 1)
    config = folder / "pinger.toml"
    config.write_text(
        f'device_id = "{device_id}"\n[uplink]\n  target = "{ingest.target}"\n  tls = false\n'
        f"[buffer]\n  path = '{folder / 'pinger.sqlite3'}'\n"
    )
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sensormesh_cli", "--log-level", "WARNING", "agent", "--config", str(config),
        env={**os.environ, "SENSORMESH_AGENT_TOKEN": token}, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    load = None
    try:
        async with grpc.aio.insecure_channel(control.target, interceptors=aio_interceptors(key)) as channel:
            stub = command_pb2_grpc.CommandServiceStub(channel)
            await _until_advertised(stub, device_id)
            idle = sorted([await _ping(stub, device_id) for _ in range(max(args.pings // 4, 1))])
            if args.load:
                load = await _start_load(args, url, ingest)
                await asyncio.sleep(WARM_UP_S)  # every device's stream open and paced
                load[1].send("mark")
            started = time.monotonic()
            times = [await _ping(stub, device_id) for _ in range(args.pings)]
            elapsed = time.monotonic() - started
        reached = await _stop_load(load) if load else 0.0
    finally:
        agent.terminate()
        await agent.wait()
    times.sort()
    return {
        "ping_idle_p50_ms": round(statistics.median(idle) * 1000, 2),
        "ping_idle_p99_ms": round(_p99(idle) * 1000, 2),
        "pings": len(times),
        "ping_p50_ms": round(statistics.median(times) * 1000, 2),
        "ping_p99_ms": round(_p99(times) * 1000, 2),
        "ping_max_ms": round(times[-1] * 1000, 2),
        "pings_seconds": round(elapsed, 1),
        "load_samples_per_s": round(reached),
        "load_ratio": round(reached / args.load, 3) if args.load else 0.0,
    }


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _until_advertised(stub: command_pb2_grpc.CommandServiceStub, device_id: str) -> None:
    """Wait until the agent's channel is open (a ping is accepted), and let that first one finish."""
    async with asyncio.timeout(60):
        while True:
            try:
                await _ping(stub, device_id)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                await asyncio.sleep(0.1)


async def _ping(stub: command_pb2_grpc.CommandServiceStub, device_id: str) -> float:
    """One round trip: SendCommand("ping") until WatchCommands says SUCCEEDED; in seconds."""
    started = time.perf_counter()
    command = (
        await stub.SendCommand(command_pb2.SendCommandRequest(device_id=device_id, name="ping"))
    ).command
    watch = command_pb2.WatchCommandsRequest(device_id=device_id, command_id=command.command_id)
    async for change in stub.WatchCommands(watch):
        if change.HasField("command") and change.command.state == SUCCEEDED:
            return time.perf_counter() - started
        if change.HasField("command") and change.command.state not in (1, 2, 3):
            raise RuntimeError(f"ping ended {command_pb2.CommandState.Name(change.command.state)}")
    raise RuntimeError("the watch ended before the ping finished")


async def _start_load(args: argparse.Namespace, url: str, ingest: ServiceProcess) -> tuple[Any, Any]:
    devices = await _devices(url, "bench-load", args.load_devices)
    fleet = workload.fleet(300, time.time() - 420, 500)
    samples_per_batch = fleet.samples / len(fleet.batches)
    job = LoadJob(
        address=ingest.target,
        streams=[(token, workload.serialized(fleet.batches, device_id)) for device_id, token in devices],
        batch_interval_s=samples_per_batch * len(devices) / args.load,
        samples_per_batch=samples_per_batch,
    )
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=run_load, args=(job, child), daemon=True)
    process.start()
    await asyncio.to_thread(parent.recv)  # "running"
    return process, parent


async def _stop_load(load: tuple[Any, Any]) -> float:
    process, pipe = load
    pipe.send("stop")
    reached: float = await asyncio.to_thread(pipe.recv)
    process.join(30)
    return reached


# -- offline delivery ------------------------------------------------------------------------------


async def _offline(
    args: argparse.Namespace,
    url: str,
    ingest: ServiceProcess,
    control: ServiceProcess,
    key: str,
    folder: Path,
) -> dict[str, Any]:
    from sensormesh_bench.commands_agents import advertise, connect_all

    devices = await _devices(url, "bench-away", args.offline_devices)
    await advertise(url, [d for d, _ in devices])
    async with grpc.aio.insecure_channel(control.target, interceptors=aio_interceptors(key)) as channel:
        stub = command_pb2_grpc.CommandServiceStub(channel)
        request = command_pb2.SendCommandRequest
        sends = [
            stub.SendCommand(request(device_id=devices[n % len(devices)][0], name="ping"))
            for n in range(args.offline_commands)
        ]
        queued_started = time.monotonic()
        for batch in range(0, len(sends), 50):
            await asyncio.gather(*sends[batch : batch + 50])
        queue_s = time.monotonic() - queued_started
    delivered, seconds = await connect_all(
        url, ingest.target, devices, args.offline_commands, folder / "away"
    )
    return {
        "offline_devices": len(devices),
        "offline_commands": args.offline_commands,
        "offline_queue_s": round(queue_s, 2),
        "offline_delivered": delivered,
        "offline_delivered_ratio": round(delivered / args.offline_commands, 3)
        if args.offline_commands
        else 0.0,
        "offline_delivery_s": round(seconds, 2),
    }
