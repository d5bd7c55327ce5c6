"""The client of the beacon's serial console: one command, one reply, whatever carries the bytes.

The grammar is protocol.py's: one command a line; exactly one reply, starting with REPLY_OK or
REPLY_ERR; every other line is a log line, printed whenever something happens. Three layers:

- ``Exchange`` is one command and its reply without any I/O: ``request`` is the bytes to write;
  ``feed()`` takes whatever bytes arrived and returns the reply once its line is complete,
  skipping log lines, raising ``BeaconRefusedError`` for an ``err`` reply; ``silence()`` and
  ``closed()`` are the errors to raise when nothing (more) comes.
- ``BeaconConsole`` is blocking, over a pyserial-like port (firmware/flash.py, the HIL rig).
- ``AsyncBeaconConsole`` is asyncio, over a read coroutine and a write callable (the simulated
  beacon's pty, the tests); ``AsyncBeaconConsole.for_fd()`` builds one on a non-blocking tty fd.

Both adapters discard what is waiting before they write a command, so a log line or a late reply
to an earlier command is never taken for the answer. Neither imports pyserial: the appliance does
not depend on it; callers open their ports themselves.
"""

from __future__ import annotations

import asyncio
import logging
import os
import termios
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Final, Protocol

from appliance.errors import ApplianceError
from appliance.presence import protocol

_LOGGER = logging.getLogger(__name__)

# The sketch answers on its next loop() pass: microseconds on the board, at most 10 ms in
# beacon-sim, plus a millisecond of USB. Seconds without a reply mean it is not our firmware (or
# it hung), so 3 s is plenty and still short enough for a person at a terminal.
REPLY_TIMEOUT_S: Final = 3.0
# The read timeout to open a port with (pyserial's ``timeout``). readline() returns at every line
# end, so this only bounds how late a deadline is noticed when the beacon is silent.
READ_POLL_S: Final = 0.1
# Log lines kept for a "no reply" message: what the port said instead helps tell why.
HEARD_KEPT: Final = 5
# A device that never sends a line end (wrong baud rate: noise) must not grow the buffer forever;
# this is four times the longest line the firmware prints (its TextLine holds 127 characters).
MAX_PENDING_BYTES: Final = 512
FD_READ_SIZE: Final = 1024


class LineKind(Enum):
    """What a line from the beacon is."""

    OK = "ok"  # a reply: the command did what it says
    ERR = "err"  # a reply: the command was refused; the rest of the line says why and what to do
    LOG = "log"  # not a reply: the beacon reports something that happened


def classify(line: str) -> LineKind:
    """Whether a received line (its line end removed) is a reply, and which, or a log line."""
    if line.startswith(protocol.REPLY_OK):
        return LineKind.OK
    if line.startswith(protocol.REPLY_ERR):
        return LineKind.ERR
    return LineKind.LOG


class BeaconSerialError(ApplianceError):
    """A command on a beacon's serial console did not get an ``ok`` reply."""

    def __init__(self, message: str, *, port: str, command: str) -> None:
        super().__init__(message)
        self.port = port
        self.command = command


class BadCommandError(BeaconSerialError, ValueError):
    """A command the beacon could not read as one line; nothing was sent."""


class BeaconRefusedError(BeaconSerialError):
    """The beacon answered REPLY_ERR; ``reason`` is the rest of its line, which says what to do."""

    def __init__(self, *, port: str, command: str, reason: str) -> None:
        super().__init__(f"{port} refused {command!r}: {reason}", port=port, command=command)
        self.reason = reason


class BeaconSilentError(BeaconSerialError, TimeoutError):
    """No reply within the deadline; ``heard`` holds the last log lines that came instead."""

    def __init__(self, message: str, *, port: str, command: str, heard: tuple[str, ...]) -> None:
        super().__init__(message, port=port, command=command)
        self.heard = heard


class BeaconClosedError(BeaconSerialError):
    """The port closed or failed before the reply came."""


def format_command(command: str, *, port: str = "the beacon") -> bytes:
    """``command`` as the bytes to write: checked to be one line the firmware reads whole."""
    problem = None
    if "\r" in command or "\n" in command:
        problem = "holds a line end; send one command at a time"
    elif not command.strip():
        problem = "is empty, and the beacon does not answer an empty line"
    elif not command.isascii():
        problem = "is not ASCII; the commands are (try help)"
    elif len(command) > protocol.MAX_COMMAND_LEN:
        problem = (f"is {len(command)} characters; the beacon reads at most "
                   f"{protocol.MAX_COMMAND_LEN} a line")
    if problem is not None:
        msg = f"command {command!r} for {port} {problem}"
        raise BadCommandError(msg, port=port, command=command)
    return (command + protocol.COMMAND_END).encode("ascii")


def default_hint(port: str) -> str:
    """What to do when a port does not answer like a beacon."""
    return (f"check that it is a beacon running this project's firmware: open it at "
            f"{protocol.SERIAL_BAUD} baud (python3 -m serial.tools.miniterm {port} "
            f"{protocol.SERIAL_BAUD}) and type {protocol.VERB_HELP}")


class Exchange:
    """One command and its reply, without I/O: bytes in, the reply (or the error) out.

    ``port`` names the port in messages; ``hint`` (default: ``default_hint(port)``) ends the
    messages for silence and a closed port with what to do.
    """

    def __init__(self, command: str, *, port: str, hint: str | None = None) -> None:
        self.command = command
        self.port = port
        self.hint = default_hint(port) if hint is None else hint
        self.request = format_command(command, port=port)
        self.reply: str | None = None
        self._heard: list[str] = []
        self._pending = b""

    @property
    def heard(self) -> tuple[str, ...]:
        """The last HEARD_KEPT log lines received so far."""
        return tuple(self._heard)

    def feed(self, data: bytes) -> str | None:
        """Bytes from the port; the reply line (``ok ...``) once complete, else None.

        Raises BeaconRefusedError for an ``err ...`` reply. Log lines are logged (debug) and
        skipped; bytes after the reply belong to nobody and are dropped.
        """
        if self.reply is not None:
            return self.reply
        self._pending += data
        while b"\n" in self._pending:
            raw, _, self._pending = self._pending.partition(b"\n")
            line = raw.rstrip(b"\r").decode(errors="replace")
            kind = classify(line)
            if kind is LineKind.OK:
                self.reply = line
                self._pending = b""
                return line
            if kind is LineKind.ERR:
                self._pending = b""
                raise BeaconRefusedError(port=self.port, command=self.command,
                                         reason=line.removeprefix(protocol.REPLY_ERR))
            if line:
                _LOGGER.debug("%s: %s", self.port, line)
                self._heard = [*self._heard, line][-HEARD_KEPT:]
        if len(self._pending) > MAX_PENDING_BYTES:
            self._heard = [*self._heard, repr(self._pending[:40]) + "..."][-HEARD_KEPT:]
            self._pending = b""
        return None

    def silence(self, waited_s: float) -> BeaconSilentError:
        """The error for no reply within ``waited_s`` seconds."""
        heard = self.heard
        if heard:
            seen = f"it printed only {'; '.join(repr(line) for line in heard)}"
        elif self._pending:
            seen = f"it printed {self._pending[:40]!r} without a line end"
        else:
            seen = "it printed nothing"
        msg = f"{self.port}: no reply to {self.command!r} within {waited_s:g} s ({seen}); {self.hint}"
        return BeaconSilentError(msg, port=self.port, command=self.command, heard=heard)

    def closed(self, why: str = "") -> BeaconClosedError:
        """The error for a port that closed (or failed: ``why``) before the reply."""
        reason = f" ({why})" if why else ""
        msg = f"{self.port} closed before it answered {self.command!r}{reason}; {self.hint}"
        return BeaconClosedError(msg, port=self.port, command=self.command)


class SerialPort(Protocol):
    """What BeaconConsole needs of a port; pyserial's ``serial.Serial`` has it."""

    @property
    def timeout(self) -> float | None: ...

    def write(self, data: bytes, /) -> int | None: ...

    def readline(self) -> bytes: ...

    def reset_input_buffer(self) -> None: ...


class BeaconConsole:
    """A beacon's serial console over a blocking port (pyserial), one command at a time.

    Open the port at protocol.SERIAL_BAUD with a read timeout (READ_POLL_S): ``readline()`` must
    return now and then for the deadline to be noticed. Not for several threads at once.
    """

    def __init__(self, port: SerialPort, *, name: str, timeout_s: float = REPLY_TIMEOUT_S,
                 hint: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if port.timeout is None:
            msg = (f"{name} is open without a read timeout, so a silent beacon would block for ever: "
                   f"open it with serial.Serial(..., timeout={READ_POLL_S})")
            raise ValueError(msg)
        self.name = name
        self.timeout_s = timeout_s
        self._port = port
        self._hint = hint
        self._clock = clock

    def command(self, command: str, *, timeout_s: float | None = None) -> str:
        """Send ``command``; its ``ok ...`` reply line, as the beacon printed it.

        Raises BeaconRefusedError (``err ...``), BeaconSilentError (no reply in time),
        BeaconClosedError (the port failed) or BadCommandError (nothing sent).
        """
        exchange = Exchange(command, port=self.name, hint=self._hint)
        waited_s = self.timeout_s if timeout_s is None else timeout_s
        # BeaconSilentError is a TimeoutError, hence an OSError: only the port's calls are wrapped.
        try:
            self._port.reset_input_buffer()  # log lines nobody read, a late reply to an earlier command
            self._port.write(exchange.request)
        except OSError as exc:  # pyserial's SerialException, e.g. the board was unplugged
            raise exchange.closed(str(exc)) from exc
        deadline = self._clock() + waited_s
        while True:
            try:
                data = self._port.readline()
            except OSError as exc:
                raise exchange.closed(str(exc)) from exc
            reply = exchange.feed(data)
            if reply is not None:
                return reply
            if self._clock() >= deadline:
                raise exchange.silence(waited_s)


class AsyncBeaconConsole:
    """A beacon's serial console for asyncio, one command at a time (a lock orders callers).

    ``read`` returns the next bytes that arrived (a chunk or a line; b"" when the port closed),
    ``write`` writes bytes without blocking, ``discard_input`` drops what is waiting unread.
    """

    def __init__(self, read: Callable[[], Awaitable[bytes]], write: Callable[[bytes], object], *,
                 name: str, discard_input: Callable[[], object] | None = None,
                 timeout_s: float = REPLY_TIMEOUT_S, hint: str | None = None) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self._read = read
        self._write = write
        self._discard_input = discard_input
        self._hint = hint
        self._lock = asyncio.Lock()

    @classmethod
    def for_fd(cls, fd: int, *, name: str, timeout_s: float = REPLY_TIMEOUT_S,
               hint: str | None = None) -> AsyncBeaconConsole:
        """Over a non-blocking tty file descriptor (a pty, or a port opened with os.open).

        The caller keeps owning ``fd`` (and closes it); it is read with the running loop's
        add_reader, so nothing blocks the loop.
        """

        async def read() -> bytes:
            while True:
                try:
                    return os.read(fd, FD_READ_SIZE)
                except BlockingIOError:
                    await _readable(fd)

        def write(data: bytes) -> None:
            os.write(fd, data)

        def discard_input() -> None:
            termios.tcflush(fd, termios.TCIFLUSH)

        return cls(read, write, name=name, discard_input=discard_input, timeout_s=timeout_s,
                   hint=hint)

    async def command(self, command: str, *, timeout_s: float | None = None) -> str:
        """Send ``command``; its ``ok ...`` reply line. Raises as BeaconConsole.command does."""
        exchange = Exchange(command, port=self.name, hint=self._hint)
        async with self._lock:
            try:
                if self._discard_input is not None:
                    self._discard_input()
                self._write(exchange.request)
            except OSError as exc:
                raise exchange.closed(str(exc)) from exc
            return await self._reply(exchange, timeout_s)

    async def read_reply(self, command: str, *, timeout_s: float | None = None) -> str:
        """The reply to ``command`` written earlier by someone else (e.g. into a pty before the
        beacon started); raises as ``command()`` does."""
        exchange = Exchange(command, port=self.name, hint=self._hint)
        async with self._lock:
            return await self._reply(exchange, timeout_s)

    async def _reply(self, exchange: Exchange, timeout_s: float | None) -> str:
        waited_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(waited_s):
                while True:
                    data = await self._read()
                    if not data:
                        raise exchange.closed()
                    reply = exchange.feed(data)
                    if reply is not None:
                        return reply
        except TimeoutError as exc:
            raise exchange.silence(waited_s) from exc
        except OSError as exc:
            raise exchange.closed(str(exc)) from exc


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():  # the callback may run again before the waiting task resumes
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
