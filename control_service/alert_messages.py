"""A stored alert as the contract's `Alert` message."""

from __future__ import annotations

from sensormesh.v1 import alert_pb2

from sensormesh_core.storage.alerts import AlertRecord


def alert_message(record: AlertRecord) -> alert_pb2.Alert:
    message = alert_pb2.Alert(
        alert_id=record.alert_id,
        rule_id=record.rule_id,
        device_id=record.device_id,
        sensor=record.sensor,
        quantity=record.quantity,
        severity=record.severity,  # type: ignore[arg-type]
        state=record.state,  # type: ignore[arg-type]
        count=record.count,
        last_value=record.last_value,
        message=record.message,
        cleared_by=record.cleared_by,
        acknowledged_by=record.acknowledged_by,
    )
    for field, value in (
        ("first_time", record.first_time),
        ("last_time", record.last_time),
        ("create_time", record.create_time),
        ("clear_time", record.clear_time),
        ("acknowledge_time", record.acknowledge_time),
    ):
        if value is not None:
            getattr(message, field).FromDatetime(value)
    return message
