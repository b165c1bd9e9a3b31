"""The fleet answer: each device's lowest battery and weakest signal, and the orders
ListDevices offers by them.

Both come from `latest_values`, which ingest keeps current per series: a device's
lowest battery is the smallest latest `battery_level` among its sensors, its weakest
signal the smallest latest `signal_strength`. Nothing is stored for it and ingest does
nothing more: per device it costs two lateral lookups (the device's sensors by the
`sensors` key, each one's series by the `series` key, its latest value by primary key),
a few index probes for a device with a few sensors.

Sorting by them cannot use an index (the value is an aggregate over other tables), so a
sorted page computes both for every device in the caller's scope and sorts: linear in
the fleet, about a millisecond per hundred devices, fine for fleets of thousands. Pages
are keyset pages on (value, device_id), devices without the value last in either
direction, so a page never repeats or skips a device whose values did not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sensormesh_core.errors import FieldViolation, InvalidArgument
from sensormesh_core.storage.schema import LINK_HEALTH, TYPED_QUANTITIES, SqlType

BATTERY = "battery_level"
SIGNAL = "signal_strength"
assert {BATTERY, SIGNAL} <= {q.name for q in LINK_HEALTH.quantities}
assert TYPED_QUANTITIES[BATTERY][1].sql_type is TYPED_QUANTITIES[SIGNAL][1].sql_type is SqlType.REAL


@dataclass(frozen=True, slots=True)
class SensorValue:
    """One sensor's latest value of a quantity: the device's extreme of it."""

    sensor: str
    quantity: str
    unit: str
    time: datetime
    value: (
        float  # as sent: the shortest decimal of the stored `real` (query_service/storage/stored_floats.py)
    )
    stored: float  # the stored value widened to double: what lists are sorted and paged by


def _lateral(alias: str, quantity: str) -> str:
    return (
        f"LEFT JOIN LATERAL (SELECT s.name, se.unit, lv.time, lv.value FROM sensors s "
        "JOIN series se USING (sensor_id) JOIN latest_values lv USING (series_id) "
        f"WHERE s.device_id = d.device_id AND se.quantity = '{quantity}' "
        f'ORDER BY lv.value, s.name COLLATE "C" LIMIT 1) {alias} ON true'
    )


# Joined to `devices d`: the two extremes, NULL where no sensor reported the quantity.
JOINS = f"{_lateral('battery', BATTERY)} {_lateral('signal', SIGNAL)}"
COLUMNS = ", ".join(
    f"{alias}.name AS {alias}_sensor, {alias}.unit AS {alias}_unit, {alias}.time AS {alias}_time, "
    f"{alias}.value AS {alias}_stored, {alias}.value::real::text::float8 AS {alias}_value"
    for alias in ("battery", "signal")
)


def from_row(row: Any, alias: str) -> SensorValue | None:
    """The extreme named `alias` ("battery", "signal") of a row selected with COLUMNS, if any."""
    if row.get(f"{alias}_sensor") is None:
        return None
    quantity = BATTERY if alias == "battery" else SIGNAL
    return SensorValue(
        row[f"{alias}_sensor"],
        quantity,
        row[f"{alias}_unit"],
        row[f"{alias}_time"],
        row[f"{alias}_value"],
        row[f"{alias}_stored"],
    )


@dataclass(frozen=True, slots=True)
class DeviceOrder:
    """An order of ListDevices: by id, or by an extreme (with the id breaking ties)."""

    field: str  # the AIP-132 field path, as a client writes it
    descending: bool = False

    @property
    def extreme(self) -> str | None:
        """The extreme sorted by ("battery", "signal"); None when the order is by id alone."""
        return _ORDER_EXTREMES[self.field]

    @property
    def column(self) -> str | None:
        """The sort value's SQL expression (the stored value); None when by id alone."""
        return None if self.extreme is None else f"{self.extreme}.value"

    @property
    def text(self) -> str:
        """The canonical `order_by` (page tokens are bound to it)."""
        return self.field + (" desc" if self.descending else "")


_ORDER_EXTREMES: dict[str, str | None] = {
    "device_id": None,
    f"lowest_{BATTERY}.value": "battery",
    f"weakest_{SIGNAL}.value": "signal",
}
BY_ID = DeviceOrder("device_id")


def parse_order_by(text: str) -> DeviceOrder:
    """An `order_by` (one field, optionally ` desc`; the contract's pattern) as a DeviceOrder.

    Raises InvalidArgument naming `order_by` for anything else.
    """
    words = text.split()
    if not words:
        return BY_ID
    if words[0] in _ORDER_EXTREMES and (len(words) == 1 or words[1:] == ["desc"]):
        return DeviceOrder(words[0], descending=len(words) == 2)
    choices = ", ".join(_ORDER_EXTREMES)
    description = f"must be one of {choices}, optionally followed by ' desc'"
    raise InvalidArgument(f"invalid order_by: {description}", [FieldViolation("order_by", description)])


def page_sql(order: DeviceOrder, after: str, value: str) -> tuple[str, str]:
    """(condition, ORDER BY list) of a keyset page in `order`, whose cursor is the last
    device's id (`after`, an SQL parameter such as "$1"; NULL on the first page) and,
    by an extreme, its stored value (`value`; NULL where it had none)."""
    column = order.column
    if column is None:
        if order.descending:
            return f"({after}::text IS NULL OR d.device_id < {after})", "d.device_id DESC"
        return f"({after}::text IS NULL OR d.device_id > {after})", "d.device_id"
    beyond = "<" if order.descending else ">"
    condition = (
        f"({after}::text IS NULL "
        f"OR ({value}::float8 IS NOT NULL AND ({column} {beyond} {value} "
        f"OR ({column} = {value} AND d.device_id > {after}) OR {column} IS NULL)) "
        f"OR ({value}::float8 IS NULL AND {column} IS NULL AND d.device_id > {after}))"
    )
    direction = "DESC" if order.descending else "ASC"
    return condition, f"{column} {direction} NULLS LAST, d.device_id"
