"""A simulated beacon that is the firmware itself: the sketch built for the host, on the virtual link.

``make -C firmware sim`` builds ``firmware/build/sim/beacon-sim``: beacon.ino and its logic,
unchanged, on the ArduinoBLE stand-in, with the radio bridged over stdin/stdout (text lines,
firmware/sim/bridge.h) and Serial on a pty. ``SketchBeacon`` starts that process, owns the pty and
plays the bridged radio with a bumble ``Device`` on a ``VirtualController`` of VirtualRadio's link:
it advertises exactly the bytes the sketch set, serves the GATT table the sketch built with the
values the sketch wrote, and reports connections, disconnections and writes back to the sketch.
The code that runs on the board is the code under test; only ArduinoBLE and the air are stand-ins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from bumble import core, hci
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.link import LocalLink

from appliance.errors import RadioError
from appliance.presence import protocol
from appliance.presence.beacon_serial import AsyncBeaconConsole, BeaconSerialError, format_command
from appliance_sim import air
from appliance_sim.air import SimulatedBeacon, VirtualBeaconState, beacon_address
from appliance_sim.controller import COMMAND_TIMEOUT_S, VirtualController, new_device

_LOGGER = logging.getLogger(__name__)

# Where `make -C firmware sim` puts the simulator, from the repository's root (make run, the tests
# and the rigs run there); anywhere else, name the binary (virtual_beacon_sim, --sim).
SIM_BINARY: Final = Path("firmware/build/sim/beacon-sim")
BUILD_HINT: Final = "build it with `make -C firmware sim` (needs g++ and make: sudo apt-get install g++ make)"
# The variable beacon-sim reads its beacon id from (firmware/sim/sim_id.h).
BEACON_ID_VARIABLE: Final = "BEACON_SIM_ID"
# Process start (the sanitizers' start-up is most of it, ~0.1 s) plus setup() and one loop().
START_TIMEOUT_S: Final = 5.0
# A serial command is answered on the sketch's next loop pass (at most 10 ms away).
SERIAL_TIMEOUT_S: Final = 2.0
# beacon-sim exits as soon as its stdin closes (LeakSanitizer's check at exit takes ~0.1 s).
STOP_TIMEOUT_S: Final = 5.0
# The bridge's spelling of "no bytes".
_EMPTY: Final = "-"


def sim_binary(setting: str) -> Path:
    """The beacon-sim binary the virtual_beacon_sim setting names (empty: SIM_BINARY)."""
    return Path(setting).expanduser() if setting else SIM_BINARY


def _unhex(text: str) -> bytes:
    return b"" if text == _EMPTY else bytes.fromhex(text)


def _public_address(beacon_id: int) -> str:
    # bumble wants a public address per controller too; distinct from VirtualBeacon's 00:BE:AC:...
    return f"00:5C:E7:00:{beacon_id >> 8:02X}:{beacon_id & 0xFF:02X}"


class SketchBeaconFactory:
    """Makes SketchBeacons running ``binary`` (default: the source checkout's beacon-sim)."""

    kind: Final = "sketch"

    def __init__(self, binary: Path = SIM_BINARY) -> None:
        self.binary = binary

    def default_name(self, beacon_id: int) -> str:
        """The sketch names itself, whatever its id."""
        del beacon_id
        return protocol.DEFAULT_LOCAL_NAME

    def create(self, link: LocalLink, state: VirtualBeaconState) -> SimulatedBeacon:
        return SketchBeacon(link, state.beacon_id, self.binary)


class _Description:
    """What beacon-sim says about itself before "ready": its name and GATT table."""

    def __init__(self) -> None:
        self.name = protocol.DEFAULT_LOCAL_NAME
        self.services: list[tuple[str, list[tuple[str, int]]]] = []

    def add(self, verb: str, args: list[str]) -> None:
        if verb == "name" and len(args) == 1:
            self.name = _unhex(args[0]).decode()
        elif verb == "service" and len(args) == 1:
            self.services.append((args[0], []))
        elif verb == "char" and len(args) == 2 and self.services:
            self.services[-1][1].append((args[0], int(args[1], 16)))
        else:
            msg = f"unexpected line before ready: {verb} {' '.join(args)}"
            raise ValueError(msg)


class SketchBeacon:
    """One beacon-sim process, its pty and the bumble device that is its radio.

    ``serial_path`` is the board's USB serial port: open it (115200 8N1, any terminal or pyserial)
    and type ``status``, ``adv off``, ... as at a real Nano; discard stale input first
    (``reset_input_buffer()``), since the sketch's log lines wait there until someone reads.
    ``command()`` does the same from Python. Use one of the two at a time: both read one pty.
    """

    def __init__(self, link: LocalLink, beacon_id: int, binary: Path = SIM_BINARY) -> None:
        self.beacon_id = beacon_id
        self.address = beacon_address(beacon_id)
        self.binary = binary
        self.name = protocol.DEFAULT_LOCAL_NAME
        self.serial_path: str | None = None
        # The radio as the sketch drives it: advertising data (None while not advertising), the
        # scan response, characteristic values by UUID, the LED.
        self.advertising_data: bytes | None = None
        self.scan_response_data = b""
        self.values: dict[str, bytes] = {}
        self.led = False
        self._identify_writes: list[int] = []
        self._link = link
        self._process: asyncio.subprocess.Process | None = None
        self._serial_fd: int | None = None
        self._console: AsyncBeaconConsole | None = None
        self._device: Device | None = None
        self._controller: VirtualController | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._closing = False

    @property
    def identify_writes(self) -> list[int]:
        return self._identify_writes

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    @property
    def returncode(self) -> int | None:
        """beacon-sim's exit status once it ended (0 after a clean close)."""
        return None if self._process is None else self._process.returncode

    # -- life cycle -----------------------------------------------------------------------

    async def start(self, *, present: bool) -> None:
        if not self.binary.is_file():
            msg = f"the beacon simulator {self.binary} is missing; {BUILD_HINT}"
            raise RadioError(msg)
        master, self._serial_fd = os.openpty()
        # Bytes pass as typed, no echo, no CR/LF translation: what a USB CDC port gives a host.
        tty.setraw(self._serial_fd)
        os.set_blocking(self._serial_fd, False)
        self.serial_path = os.ttyname(self._serial_fd)
        self._console = AsyncBeaconConsole.for_fd(
            self._serial_fd, name=f"sketch beacon {self.beacon_id}", timeout_s=SERIAL_TIMEOUT_S,
            hint="see beacon-sim's messages in the log",
        )
        if not present:
            # Read on the sketch's first pass: the beacon never goes on air.
            os.write(self._serial_fd, format_command(protocol.adv_command(on=False)))
        try:
            self._process = await asyncio.create_subprocess_exec(
                str(self.binary), "--serial-fd", str(master),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, pass_fds=(master,),
                env={**os.environ, BEACON_ID_VARIABLE: str(self.beacon_id)},
            )
        except OSError as exc:
            msg = f"cannot run {self.binary} ({exc}); {BUILD_HINT}"
            raise RadioError(msg) from exc
        finally:
            os.close(master)  # the child has its own copy; the pty lives while _serial_fd is open
        self._spawn(self._log_stderr())
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                description = await self._read_description()
            await self._power_on(description)
            if not present:  # "ok adv=off" to the line typed before the start
                await self._console.read_reply(protocol.adv_command(on=False))
        except (TimeoutError, ValueError, EOFError, BeaconSerialError) as exc:
            msg = (f"sketch beacon {self.beacon_id} did not start ({exc!r}); see beacon-sim's "
                   f"messages in the log, or rebuild it: make -C firmware sim")
            raise RadioError(msg) from exc
        self._spawn(self._pump())
        _LOGGER.info("Sketch beacon %s runs %s; its serial port is %s",
                     self.beacon_id, self.binary, self.serial_path)

    async def set_present(self, *, present: bool) -> None:
        """What the HIL rig does: ``adv on`` / ``adv off`` on the serial port."""
        await self.command(protocol.adv_command(on=present))

    async def close(self) -> None:
        self._closing = True
        if (device := self._device) is not None:
            self._device = None
            with contextlib.suppress(core.BaseBumbleError, TimeoutError):
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await device.stop_advertising()
                    for connection in list(device.connections.values()):
                        await connection.disconnect()
                    await device.power_off()
        if (controller := self._controller) is not None:
            self._controller = None
            self._link.remove_controller(controller)
        if (process := self._process) is not None:
            if process.stdin is not None:
                process.stdin.close()  # beacon-sim powers off when its bridge closes
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                _LOGGER.warning("Sketch beacon %s: beacon-sim did not exit; killing it", self.beacon_id)
                process.kill()
                await process.wait()
        tasks = list(self._tasks)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._console = None
        if self._serial_fd is not None:
            os.close(self._serial_fd)
            self._serial_fd = None

    # -- serial port ----------------------------------------------------------------------

    async def command(self, line: str) -> str:
        """Type ``line`` at the sketch's serial port; its ``ok ...`` reply. RadioError when the
        sketch refuses it (``err ...``, with the sketch's reason) or does not answer."""
        console = self._console
        if console is None or not self.running:
            msg = f"sketch beacon {self.beacon_id} is not running; start the virtual radio first"
            raise RadioError(msg)
        try:
            return await console.command(line)
        except BeaconSerialError as exc:
            raise RadioError(str(exc)) from exc

    # -- the bridge -----------------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = SERIAL_TIMEOUT_S) -> None:
        """Wait until ``predicate()`` holds; it is checked after every bridge message."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def _bridge_line(self) -> str:
        process = self._process
        raw = b"" if process is None or process.stdout is None else await process.stdout.readline()
        if not raw:
            status: int | None = None
            if process is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        status = await process.wait()
            msg = f"beacon-sim exited (status {status})"
            raise EOFError(msg)
        return raw.decode().rstrip("\n")

    async def _read_description(self) -> _Description:
        description = _Description()
        while (line := await self._bridge_line()) != "ready":
            verb, *args = line.split(" ")
            description.add(verb, args)
        return description

    async def _power_on(self, description: _Description) -> None:
        self.name = description.name
        controller = VirtualController(f"sketch {self.beacon_id}", self._link,
                                       _public_address(self.beacon_id))
        self._controller = controller
        device = new_device(description.name, self.address, controller)
        # ArduinoBLE's default interval; read at start so tests can shorten it for every beacon.
        device.advertising_interval_min = air.ADV_INTERVAL_MS
        device.advertising_interval_max = air.ADV_INTERVAL_MS
        for service_uuid, characteristics in description.services:
            device.add_service(Service(service_uuid, [
                self._characteristic(uuid, properties) for uuid, properties in characteristics
            ]))
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        self._device = device
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await device.power_on()

    def _characteristic(self, uuid: str, properties: int) -> Characteristic[bytes]:
        # ArduinoBLE's BLEProperty values are the GATT characteristic property bits.
        props = Characteristic.Properties(properties)
        permissions = Characteristic.Permissions(0)
        if props & Characteristic.Properties.READ:
            permissions |= Characteristic.READABLE
        if props & (Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE):
            permissions |= Characteristic.WRITEABLE

        def read(_connection: Connection) -> bytes:
            return self.values.get(uuid, b"")

        def write(_connection: Connection, value: bytes) -> None:
            if uuid == protocol.IDENTIFY_CHAR_UUID and value:
                self._identify_writes.append(value[0])
            self._send(f"write {uuid} {value.hex() or _EMPTY}")

        return Characteristic(uuid, props, permissions, CharacteristicValue(read=read, write=write))

    def _on_connection(self, connection: Connection) -> None:
        self._send("connected")
        connection.on(Connection.EVENT_DISCONNECTION, lambda _reason: self._send("disconnected"))

    def _send(self, line: str) -> None:
        process = self._process
        if process is None or process.stdin is None or process.stdin.is_closing():
            return
        process.stdin.write(line.encode() + b"\n")

    async def _pump(self) -> None:
        """Applies the sketch's radio calls to the bumble device, in order, until beacon-sim ends."""
        while True:
            try:
                line = await self._bridge_line()
            except EOFError as exc:
                if not self._closing:
                    _LOGGER.error("Sketch beacon %s: %s; it is off the air until the radio restarts",
                                  self.beacon_id, exc)
                    await self._off_air()
                return
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await self._apply(line)
            except (core.BaseBumbleError, TimeoutError, ValueError) as exc:
                _LOGGER.warning("Sketch beacon %s: %r applying %r", self.beacon_id, exc, line)
            except Exception:  # a stopped pump would leave beacon-sim blocked on its stdout
                _LOGGER.exception("Sketch beacon %s: bug applying %r", self.beacon_id, line)
            self._changed.set()

    async def _apply(self, line: str) -> None:
        verb, *args = line.split(" ")
        device = self._device
        if device is None:
            return  # closing
        if verb == "value" and len(args) == 2:
            self.values[args[0]] = _unhex(args[1])
        elif verb == "led" and args in (["0"], ["1"]):
            self.led = args == ["1"]
        elif verb == "adv" and len(args) == 2:
            self.advertising_data, self.scan_response_data = _unhex(args[0]), _unhex(args[1])
            # What ArduinoBLE's advertise() does: stop, set the data, enable.
            await device.start_advertising(
                own_address_type=hci.OwnAddressType.RANDOM,
                advertising_data=self.advertising_data,
                scan_response_data=self.scan_response_data,
            )
        elif verb == "adv-off" and not args:
            self.advertising_data = None
            await device.stop_advertising()
        elif verb == "disconnect" and not args:
            for connection in list(device.connections.values()):
                with contextlib.suppress(core.BaseBumbleError):
                    await connection.disconnect()
        else:
            msg = f"unknown bridge message {line!r}"
            raise ValueError(msg)

    async def _off_air(self) -> None:
        """The process died: like a board losing power, nothing more goes on air."""
        if (device := self._device) is None:
            return
        self.advertising_data = None
        with contextlib.suppress(core.BaseBumbleError, TimeoutError):
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                await device.stop_advertising()
                for connection in list(device.connections.values()):
                    await connection.disconnect()

    async def _log_stderr(self) -> None:
        process = self._process
        if process is None or process.stderr is None:
            return
        while raw := await process.stderr.readline():
            _LOGGER.warning("Sketch beacon %s: %s", self.beacon_id, raw.decode(errors="replace").rstrip())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
