"""A process that writes readings into a buffer as fast as it can, for the kill -9 test.

Each record's payload is its index (8 bytes, big-endian); after every group
commit the process prints the last committed sequence, so the test knows
what must survive when it kills the process.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from gateway_agent.buffer import Buffer, BufferSettings, Record


async def main(path: Path) -> None:
    settings = BufferSettings(path=path, commit_interval=timedelta(milliseconds=20), commit_max_readings=500)
    buffer = await Buffer.open(settings)
    await buffer.bind_sequence(0)

    async def report() -> None:
        seen = 0
        while True:
            await buffer.wait_for_data(seen)
            seen = buffer.last_sequence
            print(seen, flush=True)

    reporter = asyncio.create_task(report())
    index = 0
    while not reporter.done():
        batch = [Record("imu", 1_000_000 + i, i.to_bytes(8, "big")) for i in range(index, index + 50)]
        buffer.add(batch)
        index += 50
        await asyncio.sleep(0.001)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
