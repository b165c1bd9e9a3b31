"""The command link against the command double: the exchange, at most once across reconnects and
crashes, results kept while offline, parameter checks, timeouts, refusals."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sensormesh.v1 import command_delivery_pb2 as delivery
from sensormesh.v1.command_pb2 import CommandState

from gateway_agent.commands.builtins import Ping
from gateway_agent.commands.journal import EntryState
from gateway_agent.commands.link import INTERRUPTED, CommandLink
from gateway_agent.token_source import TokenSource
from sensormesh_core import __version__
from sensormesh_core.telemetry import Telemetry
from tests.gateway_agent.command_double import CommandDouble
from tests.gateway_agent.command_support import Failing, Recorder, parameter, running
from tests.gateway_agent.conftest import DEVICE_ID, TOKEN, CommandService, Ingest, LinkFactory
from tests.gateway_agent.support import until
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)
SUCCEEDED, FAILED = CommandState.COMMAND_STATE_SUCCEEDED, CommandState.COMMAND_STATE_FAILED


def kinds(double_messages: list[delivery.ConnectCommandsRequest], command_id: int) -> list[str]:
    """The device's messages about `command_id`, in order: receipt, result."""
    out = []
    for message in double_messages:
        kind = message.WhichOneof("message")
        if kind == "receipt" and message.receipt.command_id == command_id:
            out.append("receipt")
        elif kind == "result" and message.result.command_id == command_id:
            out.append("result")
    return out


async def test_the_hello_advertises_every_handler_with_its_parameters(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    valve = Recorder(
        "valve",
        (
            parameter("position", delivery.COMMAND_PARAMETER_TYPE_STRING, required=True, allowed_values=["open", "shut"]),
            parameter("percent", delivery.COMMAND_PARAMETER_TYPE_NUMBER, minimum=0, maximum=100),
        ),
    )  # fmt: skip
    link = await make_link(command_service.target, [Ping(), valve])
    async with running(link):
        await until(lambda: link.opened.is_set())
    [hello] = double.hellos
    assert hello.device_id == DEVICE_ID
    assert hello.agent_version == __version__
    assert [spec.name for spec in hello.commands] == ["ping", "valve"]
    assert hello.commands[1] == valve.spec
    assert list(hello.commands[1].parameters[0].allowed_values) == ["open", "shut"]
    assert hello.commands[1].parameters[1].maximum == 100


async def test_the_receipt_comes_before_the_run_and_the_result_is_reported_once_stored(
    command_service: CommandService,
    make_link: LinkFactory,
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    double = command_service.servicer
    handler = Recorder("record", (parameter("note"),))
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record", {"note": "hello"})
        await until(lambda: double.state(command_id) == SUCCEEDED)
        await until(lambda: link.counters.results_stored == 1)
        entry = await link.journal.get(command_id)
    assert kinds(double.received, command_id) == ["receipt", "result"]
    assert handler.calls == [{"note": "hello"}]
    assert double.result_dict(command_id) == {"echo": {"note": "hello"}}
    assert double.result(command_id).finish_time.seconds > 0  # type: ignore[union-attr]
    assert entry is not None and entry.state is EntryState.FINISHED and entry.reported
    [span] = [s for s in telemetry[1].get_finished_spans() if s.name == "command run"]
    assert span.attributes == {
        "sensormesh.command_id": command_id, "sensormesh.command_name": "record", "sensormesh.command_succeeded": True,
    }  # fmt: skip


async def state_of(link: CommandLink, command_id: int) -> EntryState | None:
    entry = await link.journal.get(command_id)
    return None if entry is None else entry.state


async def test_a_withdrawn_command_never_runs(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer

    async def cancel_before_the_receipt(d: CommandDouble, request: delivery.ConnectCommandsRequest) -> bool:
        if request.WhichOneof("message") == "receipt":
            d.cancel(request.receipt.command_id)  # the operator was faster than the receipt
        return True

    double.on_request = cancel_before_the_receipt
    handler = Recorder()
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record")

        async def withdrawn() -> bool:
            return await state_of(link, command_id) is EntryState.WITHDRAWN

        await wait_until(withdrawn, what="the journal marks the command withdrawn")
        double.offer(command_id)  # offered again anyway (a racing replica): answered with nothing
        double.on_request = None
        later = double.send("record")  # the link is still working, and in order
        await until(lambda: double.state(later) == SUCCEEDED)
    assert link.counters.withdrawals == 1
    assert len(handler.calls) == 1  # the later one only
    assert double.state(command_id) == CommandState.COMMAND_STATE_CANCELED
    assert command_id not in double.results
    assert double.receipts[command_id] == 1


async def test_an_offer_repeated_after_a_reconnect_is_confirmed_again_and_run_once(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    lost: list[int] = []

    async def lose_the_first_receipt(d: CommandDouble, request: delivery.ConnectCommandsRequest) -> bool:
        if request.WhichOneof("message") == "receipt" and not lost:
            lost.append(request.receipt.command_id)
            d.drop()  # the stream breaks with the receipt in flight: the command stays SENT
            return False
        return True

    double.on_request = lose_the_first_receipt
    handler = Recorder()
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record")
        await until(lambda: double.state(command_id) == SUCCEEDED)
    assert double.sessions == 2
    assert double.commands[command_id].delivery_count == 2
    assert kinds(double.received, command_id) == ["receipt", "receipt", "result"]
    assert len(handler.calls) == 1


async def test_a_finished_command_offered_again_gets_its_stored_result_not_a_second_run(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    handler = Recorder("record", (parameter("n", delivery.COMMAND_PARAMETER_TYPE_INTEGER),))
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record", {"n": 7})
        await until(lambda: link.counters.results_stored == 1)
        double.offer(command_id)
        await until(lambda: len(double.results[command_id]) == 2)
        double.drop()  # and after a reconnect, a reported result is not sent again unasked
        await until(lambda: double.sessions == 2 and link.opened.is_set())
        double.offer(command_id)
        await until(lambda: len(double.results[command_id]) == 3)
    first, again, third = double.results[command_id]
    assert first == again == third
    assert handler.calls == [{"n": 7}]  # INTEGER parameters reach the handler as int
    assert isinstance(handler.calls[0]["n"], int)


async def test_a_command_running_when_the_agent_died_is_reported_failed_and_never_run(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    command_id = double.add("record", CommandState.COMMAND_STATE_DELIVERED)
    handler = Recorder()
    # What a crash during the run leaves: the journal says running, the service says delivered.
    dead = await make_link(command_service.target, [handler])
    await dead.journal.receive(command_id, "record", {}, 60.0)
    assert await dead.journal.start(command_id)
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: double.state(command_id) == FAILED)
        await until(lambda: link.counters.results_stored == 1)
        double.offer(command_id)  # offered again: the stored failure, never a run
        await until(lambda: len(double.results[command_id]) == 2)
    assert double.result(command_id).error_message == INTERRUPTED  # type: ignore[union-attr]
    assert not double.result(command_id).succeeded  # type: ignore[union-attr]
    assert handler.calls == []


async def test_results_made_while_disconnected_are_sent_after_the_reconnect(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record")
        await until(lambda: handler.running == 1)
        double.refuse = grpc.StatusCode.UNAVAILABLE  # down for a while
        double.drop()
        await until(lambda: not link.opened.is_set())
        gate.set()

        async def finished() -> bool:
            return await state_of(link, command_id) is EntryState.FINISHED

        await wait_until(finished, what="the result kept in the journal while disconnected")
        assert command_id not in double.results
        double.refuse = None
        await until(lambda: double.state(command_id) == SUCCEEDED)
        await until(lambda: link.counters.results_stored == 1)
    assert len(handler.calls) == 1
    assert link.counters.sessions >= 2


async def test_parameters_that_do_not_fit_fail_naming_the_field(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    handler = Recorder(
        "record",
        (parameter("seconds", delivery.COMMAND_PARAMETER_TYPE_NUMBER, required=True, minimum=0.001),
         parameter("mode", allowed_values=["fast", "slow"])),
    )  # fmt: skip
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        too_small = double.send("record", {"seconds": 0, "mode": "fast"})
        unknown = double.send("record", {"seconds": 1, "colour": "red"})
        missing = double.send("record", {"mode": "medium"})
        nameless = double.send("no-such-command")
        await until(lambda: all(double.state(c) == FAILED for c in (too_small, unknown, missing, nameless)))
    assert double.result(too_small).error_message == (  # type: ignore[union-attr]
        "invalid parameters: parameters.seconds: must be at least 0.001"
    )
    assert "parameters.colour: not a parameter of this command" in double.result(unknown).error_message  # type: ignore[union-attr]
    missing_error = double.result(missing).error_message  # type: ignore[union-attr]
    assert "parameters.seconds: required" in missing_error
    assert "parameters.mode: must be one of fast, slow" in missing_error
    assert "no command named 'no-such-command'" in double.result(nameless).error_message  # type: ignore[union-attr]
    assert handler.calls == []


async def test_a_handler_that_overruns_its_result_timeout_is_cancelled_and_fails(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    handler = Recorder(gate=asyncio.Event())  # never opened: runs until cancelled
    link = await make_link(command_service.target, [handler, Ping()])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("record", result_timeout_s=0.2)
        after = double.send("ping")
        await until(lambda: double.state(after) == SUCCEEDED)
    assert double.state(command_id) == FAILED
    assert double.result(command_id).error_message == "timed out after 0.2 s on the device"  # type: ignore[union-attr]
    assert handler.cancelled == 1


async def test_handler_failures_are_reported_and_the_link_carries_on(
    command_service: CommandService, make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    double = command_service.servicer
    broken = Recorder("broken", fail=RuntimeError("the bus is stuck"))
    relay = Failing("relay")
    link = await make_link(command_service.target, [broken, relay, Ping()])
    async with running(link):
        await until(lambda: link.opened.is_set())
        crashed, refused, ping = double.send("broken"), double.send("relay"), double.send("ping")
        await until(lambda: double.state(ping) == SUCCEEDED)
    assert double.result(crashed).error_message == "RuntimeError: the bus is stuck"  # type: ignore[union-attr]
    assert double.result(refused).error_message == "the relay did not answer"  # type: ignore[union-attr]
    assert double.result_dict(refused) == {"tried": 3}  # a handled failure keeps its result
    assert "agent_time" in double.result_dict(ping)
    logged = [r.getMessage() for r in caplog.records if "command_handler_error" in r.getMessage()]
    assert len(logged) == 1 and f"command_id={crashed} name=broken" in logged[0]


async def test_commands_run_one_at_a_time_in_the_order_sent(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    handler = Recorder("record", (parameter("n", delivery.COMMAND_PARAMETER_TYPE_INTEGER),))
    link = await make_link(command_service.target, [handler])
    async with running(link):
        await until(lambda: link.opened.is_set())
        ids = [double.send("record", {"n": n}) for n in range(6)]
        await until(lambda: all(double.state(c) == SUCCEEDED for c in ids))
    assert [call["n"] for call in handler.finished] == list(range(6))
    assert handler.overlap == 1


async def test_the_steps_are_logged_after_the_journal_has_them(
    command_service: CommandService, make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_agent")
    double = command_service.servicer
    link = await make_link(command_service.target, [Ping()])
    async with running(link):
        await until(lambda: link.opened.is_set())
        command_id = double.send("ping")
        await until(lambda: double.state(command_id) == SUCCEEDED)
    events = [m.split()[0] for r in caplog.records if f"command_id={command_id} " in (m := r.getMessage())]
    assert events == ["event=command_received", "event=command_running", "event=command_finished"]


async def test_a_refused_device_retries_slowly_and_a_new_token_in_its_file_is_used(
    command_service: CommandService, make_link: LinkFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway_agent")
    double = command_service.servicer
    token_file = tmp_path / "device-token"
    token_file.write_text("sm_old_token\n")
    link = await make_link(command_service.target, [Ping()], token=TokenSource("sm_old_token", token_file))
    async with running(link):
        await until(
            lambda: len([r for r in caplog.records if "command_channel_refused" in r.getMessage()]) == 1
        )
        token_file.write_text(TOKEN + "\n")  # the operator rotated the token and wrote it here
        await until(lambda: link.opened.is_set())
        command_id = double.send("ping")
        await until(lambda: double.state(command_id) == SUCCEEDED)
    refused = [r.getMessage() for r in caplog.records if "command_channel_refused" in r.getMessage()]
    assert len(refused) == 1 and "code=UNAUTHENTICATED" in refused[0]
    assert any("command_channel_allowed" in r.getMessage() for r in caplog.records)


async def test_a_service_without_commands_is_retried_slowly_and_never_stops_the_agent(
    ingest: Ingest, make_link: LinkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway_agent")
    link = await make_link(ingest.target, [Ping()])  # the ingest double serves no CommandDeliveryService
    async with running(link):
        await until(
            lambda: len([r for r in caplog.records if "event=command_channel_retry" in r.getMessage()]) >= 3
        )
    unsupported = [r.getMessage() for r in caplog.records if "command_channel_unsupported" in r.getMessage()]
    assert len(unsupported) == 1


async def test_stopping_lets_the_running_command_finish_and_report(
    command_service: CommandService, make_link: LinkFactory
) -> None:
    double = command_service.servicer
    gate = asyncio.Event()
    handler = Recorder(gate=gate)
    link = await make_link(command_service.target, [handler])
    task = asyncio.create_task(link.run())
    try:
        await until(lambda: link.opened.is_set())
        command_id = double.send("record")
        queued = double.send("record")
        await until(
            lambda: handler.running == 1 and double.state(queued) == CommandState.COMMAND_STATE_DELIVERED
        )
        link.stop()
        gate.set()
        async with asyncio.timeout(10):
            await task
    finally:
        task.cancel()
    assert double.state(command_id) == SUCCEEDED
    assert link.counters.results_stored == 1
    assert len(handler.calls) == 1  # the queued one never started: it stays received
    assert await state_of(link, queued) is EntryState.RECEIVED
