"""The serial console client: its sans-I/O core, its two adapters on fakes, and both against the
real firmware (beacon-sim on a pty, as the HIL rig and firmware/flash.py meet a Nano)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from appliance.presence import protocol
from appliance.presence.beacon_serial import (
    READ_POLL_S,
    AsyncBeaconConsole,
    BadCommandError,
    BeaconClosedError,
    BeaconConsole,
    BeaconRefusedError,
    BeaconSilentError,
    Exchange,
    LineKind,
    classify,
    format_command,
)

SIM_BINARY = Path(__file__).resolve().parent.parent / "firmware" / "build" / "sim" / "beacon-sim"
PORT = "/dev/ttyACM0"


@dataclass
class FakePort:
    """A pyserial port whose beacon answers from a script: each readline() is the next chunk
    (b"" once the script is done) and moves the fake clock by the read timeout when silent."""

    chunks: list[bytes] = field(default_factory=list)
    waiting: bytes = b""  # input that arrived before the command
    timeout: float | None = READ_POLL_S
    now: float = 0.0
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> int:
        self.written.append(data)
        return len(data)

    def readline(self) -> bytes:
        if self.waiting:
            data, self.waiting = self.waiting, b""
            return data
        if self.chunks:
            return self.chunks.pop(0)
        self.now += self.timeout or 0.0
        return b""

    def reset_input_buffer(self) -> None:
        self.waiting = b""

    def clock(self) -> float:
        return self.now


def console(port: FakePort, timeout_s: float = 3.0) -> BeaconConsole:
    return BeaconConsole(port, name=PORT, timeout_s=timeout_s, clock=port.clock)


class FakeLineSource:
    """An async line source: what a pty delivers, chunk by chunk; silent (not closed) when empty."""

    def __init__(self, *chunks: bytes, closes: bool = False) -> None:
        self.chunks = list(chunks)
        self.closes = closes
        self.written: list[bytes] = []
        self.discarded = 0

    async def read(self) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.closes:
            return b""
        await asyncio.Event().wait()  # silence until the deadline cancels it
        raise AssertionError  # pragma: no cover

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def discard(self) -> None:
        self.discarded += 1

    def console(self, timeout_s: float = 3.0) -> AsyncBeaconConsole:
        return AsyncBeaconConsole(self.read, self.write, name="sketch beacon 7",
                                  discard_input=self.discard, timeout_s=timeout_s)


# -- the core --------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "kind"), [
    ("ok id=7", LineKind.OK),
    ("err usage: id [1-65535]", LineKind.ERR),
    ("BLE beacon active", LineKind.LOG),
    ("central connected", LineKind.LOG),
    ("error something", LineKind.LOG),  # not the firmware's prefix: the drift issue 10 found
    ("", LineKind.LOG),
])
def test_lines_are_classified_by_the_protocols_reply_prefixes(line: str, kind: LineKind) -> None:
    assert classify(line) is kind


def test_a_command_is_one_ascii_line_the_firmware_reads_whole() -> None:
    assert format_command("adv off") == b"adv off" + protocol.COMMAND_END.encode()
    assert format_command("x" * protocol.MAX_COMMAND_LEN).endswith(b"x\n")


@pytest.mark.parametrize(("command", "problem"), [
    ("status\nid 3", "one command at a time"),
    ("", "does not answer an empty line"),
    ("   ", "does not answer an empty line"),
    ("státus", "not ASCII"),
    ("x" * (protocol.MAX_COMMAND_LEN + 1), f"at most {protocol.MAX_COMMAND_LEN}"),
])
def test_commands_the_firmware_could_not_read_are_refused_before_sending(command: str, problem: str
                                                                         ) -> None:
    port = FakePort()
    with pytest.raises(BadCommandError, match=problem):
        console(port).command(command)
    assert port.written == []


def test_a_reply_split_across_reads_is_joined_and_what_follows_it_is_dropped() -> None:
    exchange = Exchange("status", port=PORT)
    assert exchange.feed(b"BLE beacon ac") is None
    assert exchange.feed(b"tive\r\nok id=3 ad") is None
    assert exchange.feed(b"v=on\r\ncentral connected\r\n") == "ok id=3 adv=on"
    assert exchange.heard == ("BLE beacon active",)


def test_noise_without_line_ends_does_not_grow_without_bound() -> None:
    exchange = Exchange("status", port=PORT)
    for _ in range(100):
        assert exchange.feed(b"\xff" * 100) is None
    assert len(exchange.heard) <= 5
    assert "within 3 s" in str(exchange.silence(3))


# -- the blocking adapter (flash.py, the HIL rig) ----------------------------------------------


def test_the_ok_reply_comes_back_as_the_beacon_printed_it() -> None:
    port = FakePort([b"ok id=42\r\n"])
    assert console(port).command("id") == "ok id=42"
    assert port.written == [b"id\n"]


def test_an_err_reply_raises_with_the_firmwares_message() -> None:
    # The drift issue 10 found: rig.py looked for "error", so this came out as "no reply in 5 s".
    port = FakePort([b"err bluetooth did not start; reset the board\r\n"])
    with pytest.raises(BeaconRefusedError) as caught:
        console(port).command("adv on")
    assert caught.value.reason == "bluetooth did not start; reset the board"
    assert str(caught.value) == f"{PORT} refused 'adv on': bluetooth did not start; reset the board"
    assert port.now == 0.0  # at once, not at the deadline


def test_log_lines_before_the_reply_are_skipped() -> None:
    port = FakePort([b"BLE beacon active\r\n", b"central connected\r\n", b"\r\n", b"ok adv=off\r\n"])
    assert console(port).command("adv off") == "ok adv=off"


def test_what_waited_before_the_command_is_not_taken_for_its_reply() -> None:
    port = FakePort([b"ok id=7\r\n"], waiting=b"ok adv=on\r\nBLE beacon active\r\n")
    assert console(port).command("id") == "ok id=7"


def test_silence_times_out_at_the_deadline_saying_what_was_heard_and_what_to_do() -> None:
    port = FakePort([b"BLE beacon active\r\n"])
    with pytest.raises(BeaconSilentError) as caught:
        console(port, timeout_s=2.0).command("status")
    assert 2.0 <= port.now <= 2.0 + READ_POLL_S * 2
    message = str(caught.value)
    assert message.startswith(f"{PORT}: no reply to 'status' within 2 s (it printed only "
                              "'BLE beacon active')")
    assert f"python3 -m serial.tools.miniterm {PORT} 115200" in message
    assert caught.value.heard == ("BLE beacon active",)
    assert isinstance(caught.value, TimeoutError)


def test_a_port_without_read_timeout_is_refused_since_silence_would_block_for_ever() -> None:
    with pytest.raises(ValueError, match="timeout="):
        console(FakePort(timeout=None))


def test_a_failing_port_says_it_closed() -> None:
    class Unplugged(FakePort):
        def readline(self) -> bytes:
            raise serial.SerialException("device reports readiness to read but returned no data")

    with pytest.raises(BeaconClosedError, match=r"closed before it answered 'id'.*returned no data"):
        console(Unplugged()).command("id")


# -- the asyncio adapter (the simulated beacon, the tests) --------------------------------------


async def test_async_err_reply_raises_with_the_firmwares_message() -> None:
    source = FakeLineSource(b"BLE beacon active\r\nerr usage: adv on|off\r\n")
    with pytest.raises(BeaconRefusedError, match=r"sketch beacon 7 refused 'adv up': usage: adv on\|off"):
        await source.console().command("adv up")
    assert source.written == [b"adv up\n"]
    assert source.discarded == 1


async def test_async_log_lines_are_skipped_and_a_split_reply_is_joined() -> None:
    source = FakeLineSource(b"central conn", b"ected\r\nok id=3 ", b"adv=on\r\n")
    assert await source.console().command("status") == "ok id=3 adv=on"


async def test_async_silence_times_out_with_a_clear_message() -> None:
    source = FakeLineSource(b"BLE beacon active\r\n")
    with pytest.raises(BeaconSilentError,
                       match=r"no reply to 'status' within 0.05 s \(it printed only 'BLE beacon active'\)"):
        await source.console(timeout_s=0.05).command("status")


async def test_async_closed_port_says_so() -> None:
    source = FakeLineSource(closes=True)
    with pytest.raises(BeaconClosedError, match="closed before it answered 'id'"):
        await source.console().command("id")


async def test_read_reply_waits_for_the_answer_to_a_line_written_earlier() -> None:
    source = FakeLineSource(b"ok adv=off\r\n")
    assert await source.console().read_reply("adv off") == "ok adv=off"
    assert source.written == []
    assert source.discarded == 0


async def test_concurrent_commands_take_turns() -> None:
    source = FakeLineSource(b"ok id=1\r\n", b"ok adv=off\r\n")
    client = source.console()
    first, second = await asyncio.gather(client.command("id"), client.command("adv off"))
    assert (first, second) == ("ok id=1", "ok adv=off")


# -- both adapters against the firmware itself ---------------------------------------------------


@dataclass
class SimulatedBoard:
    process: subprocess.Popen[bytes]
    fd: int  # our side of the pty: raw, non-blocking
    path: str


@pytest.fixture
def board(tmp_path: Path) -> Iterator[SimulatedBoard]:
    """beacon-sim with its radio bridge left idle; its Serial is a pty, as a Nano's USB port."""
    assert SIM_BINARY.is_file(), f"{SIM_BINARY} is missing: make -C firmware sim"
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(slave, False)
    stderr = (tmp_path / "beacon-sim.err").open("wb")
    process = subprocess.Popen([str(SIM_BINARY), "--serial-fd", str(master)], stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(master,),
                               env={**os.environ, "BEACON_SIM_ID": "9"})
    os.close(master)
    try:
        yield SimulatedBoard(process, slave, os.ttyname(slave))
    finally:
        assert process.stdin is not None
        process.stdin.close()  # beacon-sim powers off when its bridge closes
        returncode = process.wait(timeout=10)
        stderr.close()
        os.close(slave)
        assert returncode == 0, (tmp_path / "beacon-sim.err").read_text()


def test_blocking_client_over_pyserial_against_the_firmware(board: SimulatedBoard) -> None:
    with serial.Serial(board.path, protocol.SERIAL_BAUD, timeout=READ_POLL_S) as link:
        client = BeaconConsole(link, name=board.path)
        assert client.command(protocol.VERB_HELP) == protocol.REPLY_OK + protocol.HELP_TEXT
        assert protocol.reply_fields(client.command(protocol.VERB_ID)) == {"id": "9"}
        with pytest.raises(BeaconRefusedError) as caught:
            client.command("frobnicate")
        assert caught.value.reason == "unknown command (try help)"
        assert client.command(protocol.set_id_command(300)) == "ok id=300"


async def test_async_client_over_the_pty_fd_against_the_firmware(board: SimulatedBoard) -> None:
    client = AsyncBeaconConsole.for_fd(board.fd, name="sketch beacon 9")
    assert await client.command(protocol.adv_command(on=False)) == "ok adv=off"
    assert "adv=off" in await client.command(protocol.VERB_STATUS)
    with pytest.raises(BeaconRefusedError, match="usage: id \\[1-65535\\]"):
        await client.command("id 0")
    assert (await client.command(protocol.VERB_VERSION)).startswith("ok firmware=")
