"""`sensormesh agent --config agent.toml`: run the gateway agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="the agent's TOML file (see gateway_agent/agent.example.toml)"
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="replace the configured inputs with simulated sensors (IMU 100 Hz, environment, system, generic)",
    )


def run(args: argparse.Namespace) -> int:
    import msgspec

    from gateway_agent.agent import Agent, run_until_signalled
    from gateway_agent.config import SIMULATED_INPUTS, AgentSettings, ConfigError
    from sensormesh_core.telemetry import configure_telemetry

    try:
        settings = AgentSettings.load(args.config)
        if args.simulate:
            settings = msgspec.structs.replace(settings, inputs=SIMULATED_INPUTS)
        settings.device_token()
    except ConfigError as error:
        print(f"sensormesh agent: {error}", file=sys.stderr)
        return 2
    telemetry = configure_telemetry("sensormesh-agent")

    async def main() -> None:
        agent = await Agent.start(settings, telemetry)
        await run_until_signalled(agent)

    try:
        asyncio.run(main())
    except ConfigError as error:
        print(f"sensormesh agent: {error}", file=sys.stderr)
        return 2
    finally:
        telemetry.shutdown()
    return 0
