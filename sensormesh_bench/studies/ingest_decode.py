"""Measure the ingest decoder's cost per reading against protovalidate's.

Decodes the benchmark's mix (`sensormesh_bench/workload.py`, 1,000-reading
batches) with `decode_fast` (fields read and the contracts' rules checked
inline), and runs protovalidate over the same readings; prints microseconds
per reading, best of several passes; and the same for link-health readings alone (battery,
voltage and RSSI), which the mix has none of (they are a minute apart per sensor, not 100 Hz).
Figures are in docs/ingest.md.

    .venv/bin/python -m sensormesh_bench.studies.ingest_decode [--seconds-of-data 60]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import protovalidate
from sensormesh.v1 import ingest_pb2, reading_pb2

from ingest_service.catalog import DeviceCatalog
from ingest_service.decode import Decoded, Window, decode_fast
from ingest_service.rules import load_rules
from sensormesh_bench import workload


def best(run: Callable[[], object], readings: int, passes: int) -> float:
    fastest = float("inf")
    for _ in range(passes):
        began = time.perf_counter()
        run()
        fastest = min(fastest, time.perf_counter() - began)
    return fastest / readings * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds-of-data", type=int, default=60)
    args = parser.parse_args()
    fleet = workload.fleet(args.seconds_of_data, time.time() - 600, 1000)
    batches = [ingest_pb2.UploadReadingsRequest.FromString(b.SerializeToString()) for b in fleet.batches]
    items = [item for batch in batches for item in batch.readings]
    rules = load_rules()
    device = DeviceCatalog(incarnation=1)
    for kind, sensor in (("imu", "mpu6050-0x68"), ("environment", "bme280-0x76"), ("system", "system")):
        device.typed[kind][sensor] = 1
    device.typed["link_health"]["ble:tag"] = 4
    device.measurements.update({("soil-probe", "soil_moisture"): 2, ("current-clamp", "current"): 3})
    window = Window(-(2**62), 2**62)
    validator = protovalidate.Validator()

    def decode() -> None:
        for batch in batches:
            out = Decoded()
            decode_fast(
                enumerate(batch.readings),
                batch.first_sequence - 1,
                batch.last_sequence,
                device,
                rules,
                window,
                out,
            )
            assert not out.flagged and not out.pending

    link_batches = [_link_batch(items[0].reading.sample_time.seconds, i) for i in range(20)]

    def decode_link_health() -> None:
        for batch in link_batches:
            out = Decoded()
            decode_fast(enumerate(batch.readings), batch.first_sequence - 1, batch.last_sequence,
                        device, rules, window, out)  # fmt: skip
            assert not out.flagged and not out.pending

    def validate() -> None:
        for item in items:
            validator.collect_violations(item)

    print(f"{len(items):,} readings in batches of 1,000")
    print(f"decode_fast (fields + inline rules): {best(decode, len(items), 5):.2f} us/reading")
    print(f"protovalidate alone:                 {best(validate, len(items), 2):.2f} us/reading")
    print(f"decode_fast, link-health readings:   {best(decode_link_health, 20_000, 5):.2f} us/reading")


def _link_batch(seconds: int, index: int) -> ingest_pb2.UploadReadingsRequest:
    """1,000 link-health readings of one sensor (battery, voltage, RSSI), as uploaded."""
    first = index * 1000 + 1
    batch = ingest_pb2.UploadReadingsRequest(device_id="pi", first_sequence=first, last_sequence=first + 999)
    for i in range(1000):
        payload = reading_pb2.LinkHealthPayload(
            battery_level_percent=80 - i / 100, battery_voltage_volts=3.9, signal_strength_dbm=-70 - i % 20
        )
        reading = reading_pb2.Reading(sensor="ble:tag", link_health=payload)
        reading.sample_time.seconds, reading.sample_time.nanos = seconds, i * 1000
        batch.readings.add(sequence=first + i, reading=reading)
    return ingest_pb2.UploadReadingsRequest.FromString(batch.SerializeToString())


if __name__ == "__main__":
    main()
