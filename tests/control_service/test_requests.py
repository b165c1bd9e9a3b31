"""What SendCommand, ListCommands and WatchCommands answer to every kind of request: refusals
that name the field, pages, filters and scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sensormesh.v1 import command_pb2, command_pb2_grpc

from sensormesh_cli.bearer import aio_interceptors
from sensormesh_core.access.principal import ROLE_VIEWER
from sensormesh_core.device_scope import DeviceScope
from sensormesh_core.storage.registry import DEVICE_STATUS_DISABLED
from tests.bad_input.budget import examples
from tests.control_service.commands_api import send
from tests.control_service.conftest import CommandStack, Device
from tests.ingest_service.conftest import violations
from tests.support.access import make_key
from tests.support.command_device import DeviceChannel

pytestmark = pytest.mark.storage

S = command_pb2


async def refusal(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def test_an_unknown_command_names_the_field_and_what_the_device_advertises(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    error = await refusal(send(commands_stub, device.device_id, "reboot"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == {"name": "not a command of this device; it advertises ping, set_interval"}


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"seconds": 1}, {"parameters.input": "required"}),
        ({"input": "imu", "seconds": 0}, {"parameters.seconds": "must be at least 0.001"}),
        ({"input": "gps", "seconds": 1}, {"parameters.input": "must be one of imu, environment"}),
        (
            {"input": 3, "seconds": "fast"},
            {"parameters.input": "must be a string", "parameters.seconds": "must be a number"},
        ),
        (
            {"input": "imu", "seconds": 1, "force": True},
            {"parameters.force": "not a parameter of this command; it takes input, seconds"},
        ),
    ],
)
async def test_parameters_that_do_not_fit_name_each_field(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    parameters: dict[str, object],
    expected: dict[str, str],
) -> None:
    error = await refusal(send(commands_stub, device.device_id, "set_interval", **parameters))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(error) == expected


async def test_parameters_over_16_kib_are_refused(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    error = await refusal(
        send(commands_stub, device.device_id, "set_interval", input="imu" * 6000, seconds=1)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 16,384 bytes encoded" in violations(error)["parameters"]


async def test_expiry_and_timeout_out_of_range_are_refused(
    commands_stub: command_pb2_grpc.CommandServiceStub, connected: DeviceChannel, device: Device
) -> None:
    base = {"device_id": device.device_id, "name": "ping"}
    past = S.SendCommandRequest(**base)
    past.expire_time.FromDatetime(datetime.now(UTC) - timedelta(minutes=1))
    far = S.SendCommandRequest(**base)
    far.expire_time.FromDatetime(datetime.now(UTC) + timedelta(days=31))
    long_ttl = S.SendCommandRequest(**base)
    long_ttl.ttl.FromTimedelta(timedelta(days=31))
    short_timeout = S.SendCommandRequest(**base)
    short_timeout.result_timeout.FromTimedelta(timedelta(milliseconds=500))
    for request, field in (
        (past, "expire_time"),
        (far, "expire_time"),
        (long_ttl, "ttl"),
        (short_timeout, "result_timeout"),
    ):
        error = await refusal(commands_stub.SendCommand(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations(error), violations(error)


async def test_unknown_and_disabled_devices(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    db: asyncpg.Connection,
) -> None:
    assert (await refusal(send(commands_stub, "nobody", "ping"))).code() == grpc.StatusCode.NOT_FOUND
    get = S.GetCommandRequest(device_id=device.device_id, command_id=999_999)
    assert (await refusal(commands_stub.GetCommand(get))).code() == grpc.StatusCode.NOT_FOUND
    await db.execute(
        "UPDATE devices SET status = $1 WHERE device_id = $2", DEVICE_STATUS_DISABLED, device.device_id
    )
    error = await refusal(send(commands_stub, device.device_id, "ping"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "disabled" in (error.details() or "")


async def test_lists_page_newest_first_filter_by_state_and_span_devices(
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    device_channel: grpc.aio.Channel,
    register: Callable[[str], Awaitable[Device]],
) -> None:
    other = await register("soil-node")
    theirs = await DeviceChannel.open(device_channel, other.device_id, other.token)
    await theirs.expect("opened")
    mine = [await send(commands_stub, device.device_id, "ping") for _ in range(5)]
    their = await send(commands_stub, other.device_id, "ping")
    canceled = S.CancelCommandRequest(device_id=device.device_id, command_id=mine[0].command_id)
    await commands_stub.CancelCommand(canceled)

    pages, token = [], ""
    while True:
        page = await commands_stub.ListCommands(
            S.ListCommandsRequest(device_id=device.device_id, page_size=2, page_token=token)
        )
        pages.append([c.command_id for c in page.commands])
        token = page.next_page_token
        if not token:
            break
    assert [i for p in pages for i in p] == sorted((c.command_id for c in mine), reverse=True)
    assert [len(p) for p in pages] == [2, 2, 1]

    only = await commands_stub.ListCommands(
        S.ListCommandsRequest(device_id=device.device_id, states=[S.COMMAND_STATE_CANCELED])
    )
    assert [c.command_id for c in only.commands] == [mine[0].command_id]
    everyone = await commands_stub.ListCommands(S.ListCommandsRequest(device_id="-"))
    assert {c.device_id for c in everyone.commands} == {device.device_id, other.device_id}
    assert everyone.commands[0].command_id == their.command_id

    stale = S.ListCommandsRequest(device_id="-", page_token=page_with(commands_stub, device.device_id))
    error = await refusal(commands_stub.ListCommands(stale))
    assert violations(error) == {
        "page_token": "the request's parameters differ from those of the call that issued this token"
    }
    theirs.cancel()


def page_with(stub: command_pb2_grpc.CommandServiceStub, device_id: str) -> str:
    from sensormesh_core import page_tokens

    return page_tokens.encode("commands", {"device_id": device_id, "states": []}, {"before": 10})


async def test_a_scoped_viewer_sees_only_its_devices_commands(
    control: object,
    commands_stub: command_pb2_grpc.CommandServiceStub,
    connected: DeviceChannel,
    device: Device,
    device_channel: grpc.aio.Channel,
    register: Callable[[str], Awaitable[Device]],
    database_url: str,
) -> None:
    other = await register("elsewhere")
    theirs = await DeviceChannel.open(device_channel, other.device_id, other.token)
    await theirs.expect("opened")
    mine = await send(commands_stub, device.device_id, "ping")
    hidden = await send(commands_stub, other.device_id, "ping")
    key = await make_key(
        database_url, "scoped", ROLE_VIEWER, scope=DeviceScope(frozenset({device.device_id}))
    )
    port = control.port  # type: ignore[attr-defined]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=aio_interceptors(key)) as channel:
        scoped = command_pb2_grpc.CommandServiceStub(channel)
        listed = await scoped.ListCommands(S.ListCommandsRequest(device_id="-"))
        assert [c.command_id for c in listed.commands] == [mine.command_id]
        get = S.GetCommandRequest(device_id=other.device_id, command_id=hidden.command_id)
        assert (await refusal(scoped.GetCommand(get))).code() == grpc.StatusCode.NOT_FOUND
        watch = S.WatchCommandsRequest(device_id=other.device_id, command_id=hidden.command_id)
        assert (await refusal(_first(scoped.WatchCommands(watch)))).code() == grpc.StatusCode.NOT_FOUND
        assert (
            await refusal(send(scoped, device.device_id, "ping"))
        ).code() == grpc.StatusCode.PERMISSION_DENIED
    theirs.cancel()


async def _first(call: object) -> object:
    async for message in call:  # type: ignore[attr-defined]
        return message
    return None


async def test_watching_one_command_of_every_device_is_refused_naming_the_field(
    commands_stub: command_pb2_grpc.CommandServiceStub,
) -> None:
    error = await refusal(
        _first(commands_stub.WatchCommands(S.WatchCommandsRequest(device_id="-", command_id=3)))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "command_id" in violations(error)


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.text(max_size=12),
    st.sampled_from(["imu", "environment"]),
)


def expected_violations(values: dict[str, object]) -> set[str]:
    """The oracle for set_interval (input: imu|environment, required; seconds: 0.001-86400, required)."""
    bad = {f"parameters.{k}" for k in values if k not in ("input", "seconds")}
    if "input" not in values or values["input"] not in ("imu", "environment"):
        bad.add("parameters.input")
    seconds = values.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0.001 <= seconds <= 86400:
        bad.add("parameters.seconds")
    return bad


@examples(60)
@given(
    values=st.dictionaries(st.sampled_from(["input", "seconds", "extra", "Seconds"]), JSON_VALUES, max_size=4)
)
def test_generated_parameters_are_accepted_exactly_when_they_fit(
    values: dict[str, object], command_stack: CommandStack
) -> None:
    code, fields = command_stack.send("set_interval", values)
    bad = expected_violations(values)
    if bad:
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, bad)
    else:
        assert (code, fields) == (grpc.StatusCode.OK, set())
