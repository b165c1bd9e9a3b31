"""DeviceService over real gRPC against a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sensormesh.v1 import device_pb2, device_pb2_grpc, ingest_pb2, query_pb2, query_pb2_grpc

from sensormesh_core.storage.registry import token_owner
from tests.query_service.rpc_errors import field_violations
from tests.support.reading_writer import ReadingWriter, environment, imu, measurement

pytestmark = pytest.mark.storage

NOW = datetime.now(UTC).replace(microsecond=0)


async def test_create_returns_the_token_once_and_stores_only_its_hash(
    devices: device_pb2_grpc.DeviceServiceStub, writer: ReadingWriter
) -> None:
    created = await devices.CreateDevice(
        device_pb2.CreateDeviceRequest(
            device=device_pb2.Device(device_id="greenhouse-pi-1", labels={"site": "north"})
        )
    )
    assert created.token.startswith("smdt_")
    assert created.device.display_name == "greenhouse-pi-1"
    assert created.device.type == device_pb2.DEVICE_TYPE_GATEWAY
    assert created.device.status == device_pb2.DEVICE_STATUS_ACTIVE
    assert dict(created.device.labels) == {"site": "north"}
    owner = await token_owner(writer.conn, created.token)
    assert owner is not None and owner.device_id == "greenhouse-pi-1"
    assert created.token.encode() not in await writer.conn.fetchval("SELECT token_hash FROM devices")

    got = await devices.GetDevice(device_pb2.GetDeviceRequest(device_id="greenhouse-pi-1"))
    assert "token" not in str(got).lower()


async def test_create_refuses_a_taken_id_and_a_bad_one(devices: device_pb2_grpc.DeviceServiceStub) -> None:
    request = device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="pi-1"))
    await devices.CreateDevice(request)
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await devices.CreateDevice(request)
    assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await devices.CreateDevice(device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="Pi_1")))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "device.device_id" in field_violations(bad.value)


async def test_get_shows_sensors_series_inputs_thinning_rejections_and_offset(
    devices: device_pb2_grpc.DeviceServiceStub, writer: ReadingWriter, device: str
) -> None:
    await writer.write(
        device,
        [
            environment("bme280-0x76", NOW, 21.5, humidity=40.0),
            imu("mpu6050-0x68", NOW),
            measurement("soil", NOW, "soil_moisture", 31.0, "%"),
        ],
    )
    conn = writer.conn
    await conn.execute(
        "INSERT INTO device_inputs VALUES ($1, 'bme280', 2, 'i2c read failed', 3, $2)", device, NOW
    )
    for count in (5, 7):
        await conn.execute(
            "INSERT INTO thinning_reports (device_id, sensor, count, first_sample_time, last_sample_time, "
            "batch_last_sequence) VALUES ($1, 'mpu6050-0x68', $2, $3, $4, 3)",
            device,
            count,
            NOW - timedelta(hours=count),
            NOW - timedelta(hours=1),
        )
    await conn.execute(
        "INSERT INTO dead_letters (device_id, sequence, field, reason, reading) VALUES ($1, 9, 'f', 'r', '')",
        device,
    )

    got = (await devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device))).device

    assert got.committed_sequence == 3 and got.HasField("last_upload_time")
    sensors = {s.name: [(x.quantity, x.unit) for x in s.series] for s in got.sensors}
    assert sensors["bme280-0x76"] == [("relative_humidity", "%"), ("temperature", "Cel")]
    assert [q for q, _ in sensors["mpu6050-0x68"]] == [
        "acceleration_x",
        "acceleration_y",
        "acceleration_z",
        "angular_rate_x",
        "angular_rate_y",
        "angular_rate_z",
    ]
    assert sensors["soil"] == [("soil_moisture", "%")]
    (state,) = got.input_statuses
    assert (state.input, state.state, state.error_count) == ("bme280", ingest_pb2.INPUT_STATE_FAILING, 3)
    (thinned,) = got.thinned
    assert thinned.count == 12 and thinned.first_sample_time.ToDatetime(tzinfo=UTC) == NOW - timedelta(
        hours=7
    )
    assert got.rejected_count == 1


async def test_get_unknown_device_is_not_found(devices: device_pb2_grpc.DeviceServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await devices.GetDevice(device_pb2.GetDeviceRequest(device_id="nope"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_list_pages_in_id_order_with_filters(devices: device_pb2_grpc.DeviceServiceStub) -> None:
    for i in range(7):
        status = device_pb2.DEVICE_STATUS_DISABLED if i % 2 else device_pb2.DEVICE_STATUS_ACTIVE
        await devices.CreateDevice(
            device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=f"pi-{i}", status=status))
        )
    seen: list[str] = []
    token = ""
    while True:
        page = await devices.ListDevices(device_pb2.ListDevicesRequest(page_size=3, page_token=token))
        assert len(page.devices) <= 3
        seen += [d.device_id for d in page.devices]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"pi-{i}" for i in range(7)]

    active = await devices.ListDevices(device_pb2.ListDevicesRequest(status=device_pb2.DEVICE_STATUS_ACTIVE))
    assert [d.device_id for d in active.devices] == ["pi-0", "pi-2", "pi-4", "pi-6"]

    first = await devices.ListDevices(device_pb2.ListDevicesRequest(page_size=2))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await devices.ListDevices(
            device_pb2.ListDevicesRequest(
                page_token=first.next_page_token, status=device_pb2.DEVICE_STATUS_DISABLED
            )
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(caught.value)


async def test_update_applies_the_mask_or_the_fields_set(devices: device_pb2_grpc.DeviceServiceStub) -> None:
    created = await devices.CreateDevice(
        device_pb2.CreateDeviceRequest(
            device=device_pb2.Device(device_id="pi-1", display_name="Shed", description="by the door")
        )
    )
    masked = await devices.UpdateDevice(
        device_pb2.UpdateDeviceRequest(
            device=device_pb2.Device(
                device_id="pi-1", description="", status=device_pb2.DEVICE_STATUS_DISABLED
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    assert masked.device.description == "" and masked.device.status == device_pb2.DEVICE_STATUS_ACTIVE
    assert masked.device.display_name == "Shed"
    assert masked.device.update_time.ToDatetime() > created.device.update_time.ToDatetime()

    unmasked = await devices.UpdateDevice(
        device_pb2.UpdateDeviceRequest(
            device=device_pb2.Device(
                device_id="pi-1", status=device_pb2.DEVICE_STATUS_DISABLED, labels={"a": "b"}
            )
        )
    )
    assert unmasked.device.status == device_pb2.DEVICE_STATUS_DISABLED
    assert dict(unmasked.device.labels) == {"a": "b"} and unmasked.device.display_name == "Shed"

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await devices.UpdateDevice(
            device_pb2.UpdateDeviceRequest(
                device=device_pb2.Device(device_id="pi-1"),
                update_mask=field_mask_pb2.FieldMask(paths=["create_time"]),
            )
        )
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "update_mask.paths[0]" in field_violations(caught.value)

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await devices.UpdateDevice(
            device_pb2.UpdateDeviceRequest(device=device_pb2.Device(device_id="pi-9", description="x"))
        )
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND


async def test_delete_removes_registry_rows_and_readings_of_that_device_only(
    devices: device_pb2_grpc.DeviceServiceStub,
    queries: query_pb2_grpc.QueryServiceStub,
    writer: ReadingWriter,
    device: str,
) -> None:
    await devices.CreateDevice(device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id="pi-2")))
    for target in (device, "pi-2"):
        await writer.write(
            target,
            [imu("imu", NOW - timedelta(seconds=i)) for i in range(10)]
            + [environment("env", NOW, 20.0), measurement("soil", NOW, "soil_moisture", 1.0, "%")],
        )
    conn = writer.conn
    await conn.execute(
        "INSERT INTO dead_letters (device_id, sequence, field, reason, reading) VALUES ($1, 99, 'f', 'r', '')",
        device,
    )

    deleted = await devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id=device))

    assert deleted.deleted_reading_count == 12
    for table in ("imu_readings", "environment_readings", "measurements"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == (10 if table == "imu_readings" else 1)
    for table in ("sensors", "upload_offsets", "dead_letters"):
        assert await conn.fetchval(f"SELECT count(*) FROM {table} WHERE device_id = $1", device) == 0
    remaining_series = await conn.fetchval("SELECT count(*) FROM series")
    assert remaining_series == 6 + 1 + 1  # pi-2's imu, temperature and soil_moisture series
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await queries.GetLatestReadings(query_pb2.GetLatestReadingsRequest(device_id=device))
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as retired:  # no silent take-over of a deleted identity
        await devices.CreateDevice(device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=device)))
    assert retired.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    again = await devices.CreateDevice(
        device_pb2.CreateDeviceRequest(device=device_pb2.Device(device_id=device), reregister=True)
    )
    assert again.device.committed_sequence == 0
    fresh = await devices.GetDevice(device_pb2.GetDeviceRequest(device_id=device))
    assert not fresh.device.sensors

    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await devices.DeleteDevice(device_pb2.DeleteDeviceRequest(device_id="pi-404"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
