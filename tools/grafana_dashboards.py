"""Write the Grafana dashboards of k8s/components/grafana (fleet overview, device
detail, ingest health) from code, with grafana-foundation-sdk's builders.

Every panel reads the database through the provisioned PostgreSQL data source
(uid DATASOURCE_UID) as the read-only role `sensormesh_grafana`
(k8s/components/grafana/grafana_role.sql grants what these queries read), and
only tables and views that both backends have under the same names: the
registry tables, `latest_values`, `alerts`, `thinning_reports`, `dead_letters`
and the 1-minute rollups `<table>_1m` (continuous aggregates on TimescaleDB,
tables kept by ingest on plain PostgreSQL; both have `bucket`, the key and
`<column>_count/_min/_max/_sum`). Time series use Grafana's macros
(`$__timeFilter`, `$__timeGroupAlias`), which the data source expands with
`time_bucket` on TimescaleDB.

The columns a table or stat panel shows are named in its `organize`
transformation (`renameByName`: column -> header), so the panel's JSON says
what its query must return; tests/grafana/test_panel_queries.py runs every
query against a migrated database as the read-only role and checks it.

Run by `make grafana`; a test generates into a temporary folder and compares,
so a change here that is not written out fails the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cog_builder
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sensormesh_core.storage.schema import TYPED_TABLES, PayloadTable  # noqa: E402

OUT = ROOT / "k8s" / "components" / "grafana" / "dashboards"
DATASOURCE_UID = "sensormesh-timescaledb"
DATASOURCE = models.DataSourceRef(type_val="grafana-postgresql-datasource", uid=DATASOURCE_UID)
# A device is online when it committed an upload this recently (agents upload every few seconds).
ONLINE_WITHIN = "5 minutes"
# Storage units (UCUM, sensormesh_core/storage/schema.py) as Grafana's unit ids.
GRAFANA_UNITS = {
    "m/s2": "accMS2",
    "deg/s": "suffix: °/s",
    "Cel": "celsius",
    "%": "percent",
    "hPa": "pressurehpa",
    "By": "bytes",
    "V": "volt",
    "dB[mW]": "dBm",
}
SEVERITIES = "CASE a.severity WHEN 1 THEN 'critical' WHEN 2 THEN 'major' WHEN 3 THEN 'minor' WHEN 4 THEN 'warning' ELSE 'indeterminate' END"


class SqlQuery(variants.Dataquery):
    """A query of Grafana's PostgreSQL data source in code mode (the SDK has no builder for it)."""

    def __init__(self, ref_id: str, raw_sql: str, query_format: str) -> None:
        self.ref_id, self.raw_sql, self.query_format = ref_id, raw_sql, query_format

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": DATASOURCE.to_json(),
            "editorMode": "code",
            "format": self.query_format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cog_builder.Builder[variants.Dataquery]):
    def __init__(self, raw_sql: str, query_format: str = "table", ref_id: str = "A") -> None:
        self._query = SqlQuery(ref_id, raw_sql, query_format)

    def build(self) -> variants.Dataquery:
        return self._query


def _organize(columns: dict[str, str]) -> models.DataTransformerConfig:
    """Show `columns` (query column -> header) in this order."""
    return models.DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {name: index for index, name in enumerate(columns)},
            "renameByName": columns,
            "excludeByName": {},
        },
    )


def _stat(title: str, sql: str, columns: dict[str, str], width: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Sql(sql))
        .with_transformation(_organize(columns))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.NONE)
        .height(4)
        .span(width)
    )


def _table(title: str, sql: str, columns: dict[str, str], width: int = 24, height: int = 8) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Sql(sql))
        .with_transformation(_organize(columns))
        .height(height)
        .span(width)
    )


def _timeseries(title: str, sql: str, unit: str, width: int = 12) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .with_target(Sql(sql, "time_series"))
        .unit(unit)
        .height(8)
        .span(width)
    )


def _dashboard(uid: str, title: str, time_from: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .tags(["sensormesh"])
        .time(time_from, "now")
        .refresh("1m")
        .timezone("browser")
        .readonly()
    )


def _latest(quantity: str) -> str:
    """Per sensor, the latest value of `quantity`."""
    return (
        "SELECT s.device_id AS device, s.name AS sensor, lv.value, lv.time\n"
        "FROM latest_values lv JOIN series se USING (series_id) JOIN sensors s USING (sensor_id)\n"
        f"WHERE se.quantity = '{quantity}'\n"
    )


ACTIVE_ALERTS = (
    f"SELECT a.device_id AS device, a.sensor, a.quantity, {SEVERITIES} AS severity, a.rule_id AS rule,\n"
    "  a.first_time AS since, a.last_value, a.message\n"
    "FROM alerts a WHERE a.state IN (1, 2)"
)
ALERT_COLUMNS = {
    "device": "Device",
    "sensor": "Sensor",
    "quantity": "Quantity",
    "severity": "Severity",
    "rule": "Rule",
    "since": "Since",
    "last_value": "Last value",
    "message": "Message",
}


def fleet_overview() -> dashboard.Dashboard:
    last_seen = "(SELECT update_time FROM upload_offsets o WHERE o.device_id = d.device_id)"
    devices = (
        "SELECT d.device_id AS device, d.display_name AS name,\n"
        "  CASE d.status WHEN 1 THEN 'active' WHEN 2 THEN 'disabled' ELSE 'unknown' END AS status,\n"
        f"  o.update_time AS last_seen, coalesce(o.update_time > now() - interval '{ONLINE_WITHIN}', false) AS online,\n"
        "  (SELECT min(lv.value) FROM sensors s JOIN series se USING (sensor_id) JOIN latest_values lv USING (series_id)\n"
        "   WHERE s.device_id = d.device_id AND se.quantity = 'battery_level') AS battery_level,\n"
        "  (SELECT min(lv.value) FROM sensors s JOIN series se USING (sensor_id) JOIN latest_values lv USING (series_id)\n"
        "   WHERE s.device_id = d.device_id AND se.quantity = 'signal_strength') AS signal_strength,\n"
        "  (SELECT count(*) FROM alerts a WHERE a.device_id = d.device_id AND a.state IN (1, 2)) AS active_alerts\n"
        "FROM devices d LEFT JOIN upload_offsets o USING (device_id)\n"
        "ORDER BY o.update_time DESC NULLS LAST, d.device_id"
    )
    online = f"{last_seen} > now() - interval '{ONLINE_WITHIN}'"
    return (
        _dashboard("sensormesh-fleet", "sensormesh: fleet overview", "now-6h")
        .with_panel(_stat("Devices", "SELECT count(*) AS devices FROM devices d", {"devices": "Devices"}))
        .with_panel(
            _stat(
                "Online",
                f"SELECT count(*) FILTER (WHERE {online}) AS online,\n"
                f"  count(*) FILTER (WHERE {online} IS NOT TRUE) AS offline\nFROM devices d",
                {"online": "Online", "offline": "Offline"},
            )
        )
        .with_panel(
            _stat(
                "Active alerts",
                "SELECT count(*) AS active_alerts FROM alerts WHERE state IN (1, 2)",
                {"active_alerts": "Active alerts"},
            )
        )
        .with_panel(
            _stat(
                "Lowest battery",
                "SELECT min(lv.value) AS battery_level\n"
                "FROM latest_values lv JOIN series se USING (series_id) WHERE se.quantity = 'battery_level'",
                {"battery_level": "Lowest battery"},
            ).unit("percent")
        )
        .with_panel(
            _table(
                "Devices",
                devices,
                {
                    "device": "Device",
                    "name": "Name",
                    "status": "Status",
                    "last_seen": "Last seen",
                    "online": "Online",
                    "battery_level": "Lowest battery (%)",
                    "signal_strength": "Weakest signal (dBm)",
                    "active_alerts": "Active alerts",
                },
                height=10,
            )
        )
        .with_panel(
            _table(
                "Lowest battery",
                _latest("battery_level") + "ORDER BY lv.value LIMIT 10",
                {"device": "Device", "sensor": "Sensor", "value": "Battery (%)", "time": "Reported"},
                width=12,
            )
        )
        .with_panel(
            _table(
                "Weakest signal",
                _latest("signal_strength") + "ORDER BY lv.value LIMIT 10",
                {"device": "Device", "sensor": "Sensor", "value": "Signal (dBm)", "time": "Reported"},
                width=12,
            )
        )
        .with_panel(
            _table("Active alerts", ACTIVE_ALERTS + "\nORDER BY a.severity, a.first_time", ALERT_COLUMNS)
        )
    )


def _quantity_panel(kind: PayloadTable, quantity: str, unit: str) -> timeseries.Panel:
    """The device's mean of `quantity` per bucket, a line per sensor, from the 1-minute rollup."""
    sql = (
        "SELECT $__timeGroupAlias(r.bucket, $__interval), s.name AS metric,\n"
        f"  sum(r.{quantity}_sum) / sum(r.{quantity}_count) AS value\n"
        f"FROM {kind.rollup('1m')} r JOIN sensors s USING (sensor_id)\n"
        f"WHERE s.device_id = '$device' AND $__timeFilter(r.bucket) AND r.{quantity}_count > 0\n"
        "GROUP BY 1, 2 ORDER BY 1"
    )
    return _timeseries(quantity.replace("_", " ").capitalize(), sql, GRAFANA_UNITS.get(unit, unit))


def device_detail() -> dashboard.Dashboard:
    device = (
        dashboard.QueryVariable("device")
        .label("Device")
        .datasource(DATASOURCE)
        .query("SELECT device_id FROM devices ORDER BY device_id")
        .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
    )
    latest = (
        "SELECT s.name AS sensor, se.quantity, lv.value, se.unit, lv.time\n"
        "FROM latest_values lv JOIN series se USING (series_id) JOIN sensors s USING (sensor_id)\n"
        "WHERE s.device_id = '$device' ORDER BY s.name, se.quantity"
    )
    built = (
        _dashboard("sensormesh-device", "sensormesh: device detail", "now-24h")
        .with_variable(device)
        .with_panel(
            _table(
                "Latest values",
                latest,
                {
                    "sensor": "Sensor",
                    "quantity": "Quantity",
                    "value": "Value",
                    "unit": "Unit",
                    "time": "Time",
                },
                width=12,
            )
        )
        .with_panel(
            _table(
                "Active alerts",
                ACTIVE_ALERTS + "\n  AND a.device_id = '$device' ORDER BY a.severity, a.first_time",
                ALERT_COLUMNS,
                width=12,
            )
        )
    )
    for kind in TYPED_TABLES:
        built = built.with_row(dashboard.Row(kind.payload.replace("_", " ").capitalize()))
        for quantity in kind.quantities:
            built = built.with_panel(_quantity_panel(kind, quantity.name, quantity.unit))
    measurements = (
        "SELECT $__timeGroupAlias(r.bucket, $__interval), s.name || ' ' || se.quantity AS metric,\n"
        "  sum(r.value_sum) / sum(r.value_count) AS value\n"
        "FROM measurements_1m r JOIN series se USING (series_id) JOIN sensors s USING (sensor_id)\n"
        "WHERE s.device_id = '$device' AND $__timeFilter(r.bucket) AND r.value_count > 0\n"
        "GROUP BY 1, 2 ORDER BY 1"
    )
    return built.with_row(dashboard.Row("Measurements")).with_panel(
        _timeseries("Named measurements", measurements, "short", width=24)
    )


def _rollups_union(select: Callable[[PayloadTable], str]) -> str:
    """`select` (over `r`) from every typed 1-minute rollup inside the time filter, one UNION ALL."""
    return "\n  UNION ALL\n".join(
        f"  SELECT r.bucket, r.sensor_id, {select(kind)} FROM {kind.rollup('1m')} r WHERE $__timeFilter(r.bucket)"
        for kind in TYPED_TABLES
    )


def ingest_health() -> dashboard.Dashboard:
    def samples(kind: PayloadTable) -> str:
        return (
            " + ".join(f"r.{q.name}_count" for q in kind.quantities)
            + " AS samples, "
            + (f"greatest({', '.join(f'r.{q.name}_count' for q in kind.quantities)}) AS readings")
        )

    per_minute = (
        "SELECT $__timeGroupAlias(u.bucket, 1m), sum(u.readings) AS readings, sum(u.samples) AS samples\n"
        "FROM (\n" + _rollups_union(samples) + "\n  UNION ALL\n"
        "  SELECT r.bucket, NULL, r.value_count, r.value_count FROM measurements_1m r WHERE $__timeFilter(r.bucket)\n"
        ") u GROUP BY 1 ORDER BY 1"
    )
    reporting = (
        "SELECT $__timeGroupAlias(u.bucket, 1m), count(DISTINCT s.device_id) AS devices\n"
        "FROM (\n" + _rollups_union(lambda kind: "1") + "\n  UNION ALL\n"
        "  SELECT r.bucket, se.sensor_id, 1 FROM measurements_1m r JOIN series se USING (series_id)\n"
        "  WHERE $__timeFilter(r.bucket)\n"
        ") u JOIN sensors s USING (sensor_id) GROUP BY 1 ORDER BY 1"
    )
    thinned = (
        "SELECT $__timeGroupAlias(report_time, $__interval), sum(count) AS thinned\n"
        "FROM thinning_reports WHERE $__timeFilter(report_time) GROUP BY 1 ORDER BY 1"
    )
    refused = (
        "SELECT $__timeGroupAlias(receive_time, $__interval), count(*) AS dead_letters\n"
        "FROM dead_letters WHERE $__timeFilter(receive_time) GROUP BY 1 ORDER BY 1"
    )
    recent_refused = (
        "SELECT device_id AS device, receive_time AS received, field, reason, sequence\n"
        "FROM dead_letters WHERE $__timeFilter(receive_time) ORDER BY receive_time DESC LIMIT 100"
    )
    lagging = (
        "SELECT d.device_id AS device, o.update_time AS last_upload, o.committed_sequence AS sequence,\n"
        "  extract(epoch FROM now() - o.update_time) AS seconds_since\n"
        "FROM devices d JOIN upload_offsets o USING (device_id)\n"
        "WHERE d.status = 1 AND o.update_time IS NOT NULL ORDER BY o.update_time LIMIT 20"
    )
    return (
        _dashboard("sensormesh-ingest", "sensormesh: ingest health", "now-6h")
        .with_panel(_timeseries("Readings and samples committed per minute", per_minute, "short", width=24))
        .with_panel(_timeseries("Devices reporting per minute", reporting, "short"))
        .with_panel(_timeseries("Readings thinned on the agents", thinned, "short"))
        .with_panel(_timeseries("Readings refused (dead letters)", refused, "short"))
        .with_panel(
            _table(
                "Longest since last upload",
                lagging,
                {
                    "device": "Device",
                    "last_upload": "Last upload",
                    "sequence": "Sequence",
                    "seconds_since": "Seconds since",
                },
                width=12,
            )
        )
        .with_panel(
            _table(
                "Recent dead letters",
                recent_refused,
                {
                    "device": "Device",
                    "received": "Received",
                    "field": "Field",
                    "reason": "Reason",
                    "sequence": "Sequence",
                },
                width=24,
            )
        )
    )


DASHBOARDS = {
    "fleet-overview": fleet_overview,
    "device-detail": device_detail,
    "ingest-health": ingest_health,
}


def render() -> dict[str, str]:
    """File name -> the dashboard's JSON, as committed."""
    return {
        f"{name}.json": json.dumps(
            build().build(), cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
        for name, build in DASHBOARDS.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder to write into (default {OUT})")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
