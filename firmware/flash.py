#!/usr/bin/env python3
"""Flash the beacon firmware onto Arduino Nano 33 BLE boards over USB.

    firmware/flash.py FILE.bin              flash one board with an image you built
    firmware/flash.py --id 7                build with BEACON_ID=7 (arduino-cli), flash one board
    firmware/flash.py --all --first-id 7    every connected board, one after another: ids 7, 8, ...

A board running a sketch (USB 2341:805a) is reset into its bootloader (2341:005a) with the
1200-baud touch; a board already in the bootloader (double-tap reset) is flashed as it is. Then
Arduino's bossac fork writes the image with the core's arguments (-U -i -e -w FILE -R), or
`arduino-cli upload` does the whole job, and the board is asked for its id over serial (with the
appliance's client of the beacon's serial console, appliance/presence/beacon_serial.py).

The beacon id is compiled in (`make firmware BEACON_ID=n`, one build per id): the firmware keeps an
id set with the serial command `id <n>` in RAM only, so a serial id would be lost at the next reset.

Exit status: 0 done, 1 pyserial or the appliance package missing, 2 bad arguments, 3 no board,
4 several boards and none chosen, 5 the bootloader never appeared, 6 no usable bossac (e.g.
Debian's), 7 the upload failed, 8 the build failed, 9 the board did not answer as expected after
flashing. Messages say what to do.
Runs with the project's venv (make setup; .venv/bin/python firmware/flash.py): it has pyserial and
the appliance package, whose protocol.py and serial client this script shares with the firmware,
the HIL rig and the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

try:
    import serial  # type: ignore[import-untyped]  # pyserial ships no type information
    from serial.tools import list_ports  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.exit("flash.py needs pyserial: run it with the project's venv "
             "(make setup; .venv/bin/python firmware/flash.py ...)")
try:
    from appliance.presence import protocol
    from appliance.presence.beacon_serial import READ_POLL_S, BeaconConsole, BeaconSerialError
except ImportError:  # pragma: no cover - depends on the interpreter
    sys.exit("flash.py needs the appliance package (the beacon protocol and its serial client): run it "
             "with the project's venv (make setup; .venv/bin/python firmware/flash.py ...)")

FIRMWARE_DIR: Final = Path(__file__).resolve().parent
FQBN: Final = "arduino:mbed_nano:nano33ble"
ARDUINO_VID: Final = 0x2341
# The sketch's USB identity (ArduinoCore-mbed BOARD_PRODUCTID). The core's boards.txt also lists
# 0x015a and 0x025a for this board; they are taken as "running a sketch" too, i.e. touched.
APPLICATION_PIDS: Final = frozenset({0x805A, 0x015A, 0x025A})
BOOTLOADER_PIDS: Final = frozenset({0x005A})
# arduino-cli waits 10 s for the upload port after the touch; the Nano needs 1-2 s to re-enumerate.
BOOTLOADER_TIMEOUT_S: Final = 10.0
# After bossac -R the sketch starts in well under a second; USB enumeration and udev add 1-2 s.
APPLICATION_TIMEOUT_S: Final = 10.0
# Listing ports reads sysfs (a few ms); 4 looks a second do not slow the board down.
POLL_S: Final = 0.25
# bossac erases and writes ~200 KB in about 10 s over USB; a minute and a half means it hung.
UPLOAD_TIMEOUT_S: Final = 90.0
# The first arduino-cli build compiles the whole mbed core: minutes on a Pi.
BUILD_TIMEOUT_S: Final = 900.0
VERSION_TIMEOUT_S: Final = 10.0
# The Nano 33 BLE's upload.maximum_size (boards.txt): flash left for the sketch by the bootloader.
MAX_IMAGE_BYTES: Final = 983040
IMAGE_NAME: Final = "beacon.ino.bin"  # arduino-cli's --export-binaries name for beacon/
TOUCH_BAUD: Final = 1200

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_NO_BOARD: Final = 3
EXIT_SEVERAL_BOARDS: Final = 4
EXIT_NO_BOOTLOADER: Final = 5
EXIT_NO_UPLOADER: Final = 6
EXIT_UPLOAD_FAILED: Final = 7
EXIT_BUILD_FAILED: Final = 8
EXIT_VERIFY_FAILED: Final = 9

WHERE_TO_GET_BOSSAC: Final = (
    "Use Arduino's fork of bossac, which arduino-cli installs with the board's core: "
    "`arduino-cli core install arduino:mbed_nano` puts it in "
    "~/.arduino15/packages/arduino/tools/bossac/<version>/bossac, where flash.py finds it "
    "(or pass --bossac PATH; releases also at https://github.com/arduino/BOSSA/releases)."
)


class FlashError(Exception):
    """A failure the user can act on; ``code`` is the exit status."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Port:
    device: str
    vid: int | None
    pid: int | None
    location: str | None = None  # the USB path (e.g. "1-1.2:1.0"): survives re-enumeration

    @property
    def is_application(self) -> bool:
        return self.vid == ARDUINO_VID and self.pid in APPLICATION_PIDS

    @property
    def is_bootloader(self) -> bool:
        return self.vid == ARDUINO_VID and self.pid in BOOTLOADER_PIDS

    @property
    def is_nano(self) -> bool:
        return self.is_application or self.is_bootloader

    def describe(self) -> str:
        usb = "" if self.vid is None or self.pid is None else f"USB {self.vid:04x}:{self.pid:04x}"
        where = f"at {self.location}" if self.location else ""
        details = ", ".join(part for part in (usb, where) if part)
        return f"{self.device} ({details})" if details else self.device


def system_ports() -> list[Port]:
    return [Port(info.device, info.vid, info.pid, info.location) for info in list_ports.comports()]


@dataclass
class Deps:
    """What flash.py needs from the machine; tests pass fakes (no USB, no waiting)."""

    list_ports: Callable[[], list[Port]] = system_ports
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    out: TextIO = field(default_factory=lambda: sys.stdout)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


@dataclass(frozen=True, slots=True)
class Uploader:
    kind: str  # "bossac" or "arduino-cli"
    path: str
    version: str = ""


# -- the uploader ---------------------------------------------------------------------------


def bossac_version(path: str, environ: Mapping[str, str]) -> str | None:
    """The version bossac prints in its help ("1.9.1", "1.9.1-arduino2"), None if unknown."""
    try:
        result = subprocess.run(  # noqa: S603 - the user's own tool
            [path, "--help"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S,
            check=False, env=dict(environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"cannot run bossac at {path} ({exc}). {WHERE_TO_GET_BOSSAC}"
        raise FlashError(EXIT_NO_UPLOADER, msg) from exc
    found = re.search(r"Version (\S+)", result.stdout + result.stderr)
    return found.group(1) if found else None


def checked_bossac(path: str, deps: Deps) -> Uploader:
    version = bossac_version(path, deps.environ)
    if version is None:
        deps.out.write(f"warning: cannot tell which bossac {path} is; trying it anyway\n")
        return Uploader("bossac", path)
    if "arduino" not in version:
        msg = (f"{path} is upstream bossac {version} (Debian's bossa-cli is 1.9.1): it cannot "
               f"flash the Nano 33 BLE's nRF52840 (\"Device unsupported\"). {WHERE_TO_GET_BOSSAC}")
        raise FlashError(EXIT_NO_UPLOADER, msg)
    return Uploader("bossac", path, version)


def _version_key(path: Path) -> list[int]:
    return [int(number) for number in re.findall(r"\d+", path.parent.name)]


def arduino_bossacs(environ: Mapping[str, str]) -> list[Path]:
    """Every bossac arduino-cli installed, newest first."""
    data = environ.get("ARDUINO_DIRECTORIES_DATA") or str(Path(environ.get("HOME", "~")) / ".arduino15")
    tools = Path(data).expanduser() / "packages" / "arduino" / "tools" / "bossac"
    return sorted(tools.glob("*/bossac"), key=_version_key, reverse=True)


def find_uploader(args: argparse.Namespace, deps: Deps) -> Uploader:
    if args.bossac:
        return checked_bossac(args.bossac, deps)
    arduino_cli = args.arduino_cli or shutil.which("arduino-cli", path=deps.environ.get("PATH"))
    if args.use_arduino_cli:
        if not arduino_cli:
            msg = ("--use-arduino-cli: arduino-cli not found; install it "
                   "(https://arduino.github.io/arduino-cli/latest/installation/) or pass --arduino-cli PATH")
            raise FlashError(EXIT_NO_UPLOADER, msg)
        return Uploader("arduino-cli", arduino_cli)
    installed = arduino_bossacs(deps.environ)
    if installed:
        return checked_bossac(str(installed[0]), deps)
    on_path = shutil.which("bossac", path=deps.environ.get("PATH"))
    upstream: FlashError | None = None
    if on_path:
        try:
            return checked_bossac(on_path, deps)
        except FlashError as exc:
            upstream = exc
    if arduino_cli:
        deps.out.write(f"uploading with {arduino_cli} upload (no Arduino bossac found)\n")
        return Uploader("arduino-cli", arduino_cli)
    if upstream is not None:
        raise upstream
    msg = f"no bossac found. {WHERE_TO_GET_BOSSAC}"
    raise FlashError(EXIT_NO_UPLOADER, msg)


# -- running tools --------------------------------------------------------------------------


def run_streaming(command: Sequence[str], timeout_s: float, deps: Deps) -> tuple[int, str]:
    """Runs ``command``, copying its output to ``deps.out`` as it comes (bossac's progress)."""
    process = subprocess.Popen(  # noqa: S603 - tools the user chose or the project's Makefile
        list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(deps.environ)
    )
    assert process.stdout is not None  # noqa: S101 - stdout=PIPE
    deadline = time.monotonic() + timeout_s  # the tool runs in real time, whatever deps.clock says
    chunks: list[bytes] = []
    with process:
        while True:
            remaining = deadline - time.monotonic()
            ready = select.select([process.stdout], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                process.kill()
                process.wait()
                return -1, b"".join(chunks).decode(errors="replace")
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            chunks.append(chunk)
            deps.out.write(chunk.decode(errors="replace"))
            deps.out.flush()
        returncode = process.wait()
    return returncode, b"".join(chunks).decode(errors="replace")


def build_image(beacon_id: int, args: argparse.Namespace, deps: Deps) -> Path:
    """``make firmware BEACON_ID=n`` into its own directory; the path of its beacon.ino.bin."""
    out_dir = Path(args.out_dir).resolve() / f"id-{beacon_id}"
    command = ["make", "-C", str(FIRMWARE_DIR), "firmware", f"BEACON_ID={beacon_id}",
               f"FIRMWARE_OUT={out_dir}"]
    if args.arduino_cli:
        command.append(f"ARDUINO_CLI={args.arduino_cli}")
    if shutil.which("make", path=deps.environ.get("PATH")) is None:
        raise FlashError(EXIT_BUILD_FAILED, "make is missing: sudo apt-get install make")
    deps.out.write(f"building the firmware with beacon id {beacon_id}: {' '.join(command)}\n")
    returncode, _output = run_streaming(command, BUILD_TIMEOUT_S, deps)
    image = out_dir / IMAGE_NAME
    if returncode != 0 or not image.is_file():
        msg = (f"building the firmware for beacon id {beacon_id} failed (status {returncode}); "
               "the messages above say what is missing (make firmware needs arduino-cli with the "
               "arduino:mbed_nano core and the ArduinoBLE library)")
        raise FlashError(EXIT_BUILD_FAILED, msg)
    return image


def check_image(image: Path) -> None:
    if image.suffix != ".bin":
        kind = image.suffix or "file without suffix"
        msg = f"{image}: bossac writes raw images; give the .bin ({IMAGE_NAME}), not a {kind}"
        raise FlashError(EXIT_USAGE, msg)
    if not image.is_file():
        msg = f"{image} does not exist; build it with `make -C firmware firmware` or use --id N"
        raise FlashError(EXIT_USAGE, msg)
    size = image.stat().st_size
    if not 0 < size <= MAX_IMAGE_BYTES:
        msg = f"{image} is {size} bytes; a Nano 33 BLE image is 1..{MAX_IMAGE_BYTES} bytes"
        raise FlashError(EXIT_USAGE, msg)


# -- boards ---------------------------------------------------------------------------------


def nanos(ports: Sequence[Port]) -> list[Port]:
    # By USB path first: the order of the hub's sockets, stable from run to run.
    return sorted((port for port in ports if port.is_nano), key=lambda p: (p.location or "", p.device))


def choose_boards(args: argparse.Namespace, deps: Deps) -> list[Port]:
    ports = deps.list_ports()
    boards = nanos(ports)
    if args.port:
        chosen = [port for port in ports if port.device == args.port]
        if not chosen:
            known = ", ".join(board.describe() for board in boards) or "none"
            msg = f"no serial port {args.port}; Nano 33 BLE boards connected: {known}"
            raise FlashError(EXIT_NO_BOARD, msg)
        if not chosen[0].is_nano:
            msg = (f"{chosen[0].describe()} is not an Arduino Nano 33 BLE (USB 2341:805a, or "
                   "2341:005a in its bootloader)")
            raise FlashError(EXIT_NO_BOARD, msg)
        return chosen
    if not boards:
        msg = ("no Arduino Nano 33 BLE found (USB 2341:805a, or 2341:005a in its bootloader). "
               "Plug it in with a data cable (not a charge-only one); if it is plugged in, "
               "double-tap its reset button and run this again")
        raise FlashError(EXIT_NO_BOARD, msg)
    if len(boards) > 1 and not args.all:
        listed = ", ".join(board.describe() for board in boards)
        msg = (f"{len(boards)} Nano 33 BLE boards found ({listed}); choose one with --port, "
               "or flash them all with --all --first-id N")
        raise FlashError(EXIT_SEVERAL_BOARDS, msg)
    return boards


def touch(port: Port) -> None:
    """The 1200-baud touch: open at 1200 baud, drop DTR, close. The sketch resets into its bootloader."""
    link = serial.Serial()
    link.port = port.device
    link.baudrate = TOUCH_BAUD
    link.dtr = False  # applied by open()
    try:
        link.open()
    except serial.SerialException as exc:
        msg = (f"cannot open {port.device} ({exc}); if it is a permission problem, join the "
               "dialout group (sudo usermod -aG dialout $USER, then log in again)")
        raise FlashError(EXIT_NO_BOOTLOADER, msg) from exc
    try:
        link.close()
    except OSError:
        pass  # the board may already be gone: that is the point


def wait_for(
    deps: Deps, timeout_s: float, find: Callable[[list[Port]], list[Port]], what: str
) -> Port | None:
    """Polls the port list until ``find`` returns exactly one port; None at the deadline."""
    deadline = deps.clock() + timeout_s
    while True:
        found = find(deps.list_ports())
        if len(found) > 1:
            listed = ", ".join(port.describe() for port in found)
            msg = (f"several ports could be {what} ({listed}); flash.py will not guess: "
                   "unplug the other boards or choose one with --port")
            raise FlashError(EXIT_SEVERAL_BOARDS, msg)
        if found:
            return found[0]
        if deps.clock() >= deadline:
            return None
        deps.sleep(POLL_S)


def enter_bootloader(board: Port, args: argparse.Namespace, deps: Deps) -> Port:
    if board.is_bootloader:
        deps.out.write(f"  {board.describe()} is in its bootloader already\n")
        return board
    before = {port.device for port in deps.list_ports() if port.is_bootloader}

    def ours(ports: list[Port]) -> list[Port]:
        if board.location:
            return [port for port in ports if port.is_bootloader and port.location == board.location]
        # No USB path (not seen on Linux, where pyserial reads it from sysfs): any bootloader that
        # was not there before the touch. A board someone double-taps meanwhile would look the same.
        return [port for port in ports if port.is_bootloader and port.device not in before]

    deps.out.write(f"  resetting {board.device} into the bootloader (1200-baud touch)\n")
    touch(board)
    bootloader = wait_for(deps, args.timeout, ours, f"the bootloader of {board.device}")
    if bootloader is None:
        msg = (f"{board.describe()} did not come back as a bootloader (USB 2341:005a) within "
               f"{args.timeout:g} s of the 1200-baud touch. Double-tap its reset button (the orange "
               "LED pulses slowly) and run this again: a board in the bootloader is flashed directly")
        raise FlashError(EXIT_NO_BOOTLOADER, msg)
    deps.out.write(f"  bootloader at {bootloader.describe()}\n")
    return bootloader


def upload(uploader: Uploader, board: Port, bootloader: Port, image: Path, deps: Deps) -> None:
    if uploader.kind == "bossac":
        # The core's platform.txt: --port={serial.port.file} -U -i -e -w "{bin}" -R. bossac opens
        # the full path as given (then tries /dev/<name>), so the device path works everywhere.
        command = [uploader.path, f"--port={bootloader.device}", "-U", "-i", "-e", "-w", str(image), "-R"]
    else:
        # arduino-cli does the touch and the wait itself: it gets the port the board has now.
        source = (["--input-dir", str(image.parent)] if image.name == IMAGE_NAME
                  else ["--input-file", str(image)])
        command = [uploader.path, "upload", "-b", FQBN, "-p", board.device, *source]
    deps.out.write(f"  flashing {image} with {' '.join(command)}\n")
    returncode, output = run_streaming(command, UPLOAD_TIMEOUT_S, deps)
    if returncode == 0:
        return
    if "unsupported" in output.lower():
        msg = (f"{uploader.path} reports the device unsupported: that is upstream bossac. "
               f"{WHERE_TO_GET_BOSSAC}")
        raise FlashError(EXIT_NO_UPLOADER, msg)
    state = "timed out" if returncode == -1 else f"failed (status {returncode})"
    msg = (f"{uploader.kind} {state}; the messages above say why. The board stays in its "
           "bootloader: run this again and it is flashed directly")
    raise FlashError(EXIT_UPLOAD_FAILED, msg)


def verify(board: Port, others: set[str], expected_id: int | None, deps: Deps) -> None:
    """Waits for the flashed board's sketch on USB and asks it for its version and id."""

    def ours(ports: list[Port]) -> list[Port]:
        if board.location:
            return [port for port in ports if port.is_application and port.location == board.location]
        return [port for port in ports if port.is_application and port.device not in others]

    application = wait_for(deps, APPLICATION_TIMEOUT_S, ours, "the flashed board")
    if application is None:
        msg = (f"the board flashed from {board.device} did not come back as a sketch (USB 2341:805a) "
               f"within {APPLICATION_TIMEOUT_S:g} s; unplug it and plug it in again, then check it "
               "with a terminal (`id`)")
        raise FlashError(EXIT_VERIFY_FAILED, msg)
    deadline = deps.clock() + APPLICATION_TIMEOUT_S
    while True:  # udev may still be setting the port up
        try:
            link = serial.Serial(application.device, protocol.SERIAL_BAUD, timeout=READ_POLL_S)
            break
        except serial.SerialException as exc:
            if deps.clock() >= deadline:
                msg = (f"cannot open {application.device} ({exc}); join the dialout group "
                       "(sudo usermod -aG dialout $USER, then log in again)")
                raise FlashError(EXIT_VERIFY_FAILED, msg) from exc
            deps.sleep(POLL_S)
    terminal = f"python3 -m serial.tools.miniterm {application.device} {protocol.SERIAL_BAUD}"
    with link:
        console = BeaconConsole(link, name=application.device)  # real time, whatever deps.clock says
        try:
            version = console.command(protocol.VERB_VERSION)
            reply = console.command(protocol.VERB_ID)
        except BeaconSerialError as exc:  # its message ends with how to look at the board
            msg = f"the board was flashed, but {exc}; --no-verify skips this check"
            raise FlashError(EXIT_VERIFY_FAILED, msg) from exc
    answered_id = protocol.reply_fields(reply).get("id", "")
    if expected_id is None:
        expected, id_ok = f"{protocol.REPLY_OK}id=<n>", answered_id.isdigit()
    else:
        expected, id_ok = f"{protocol.REPLY_OK}id={expected_id}", answered_id == str(expected_id)
    if "firmware" not in protocol.reply_fields(version) or not id_ok:
        msg = (f"{application.device} was flashed but answered {version!r} to `version` "
               f"and {reply!r} to `id` (expected {expected!r}). Look at it with "
               f"`{terminal}` and type status; --no-verify skips this check")
        raise FlashError(EXIT_VERIFY_FAILED, msg)
    deps.out.write(f"  {application.device}: {version}, {reply}\n")


def flash_board(
    board: Port, image: Path, beacon_id: int | None, uploader: Uploader,
    args: argparse.Namespace, deps: Deps,
) -> None:
    others = {port.device for port in deps.list_ports() if port.is_application} - {board.device}
    bootloader = board if uploader.kind == "arduino-cli" else enter_bootloader(board, args, deps)
    upload(uploader, board, bootloader, image, deps)
    if args.verify:
        verify(board, others, beacon_id, deps)


# -- the command ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="flash.py", description="Flash the beacon firmware onto Arduino Nano 33 BLE boards.",
        epilog="Exit status: 0 done, 2 usage, 3 no board, 4 several boards, 5 no bootloader, "
               "6 no usable bossac, 7 upload failed, 8 build failed, 9 board did not answer.",
    )
    parser.add_argument("image", nargs="?", type=Path, help=f"a built image ({IMAGE_NAME})")
    parser.add_argument("--id", type=int, dest="beacon_id",
                        help="build with this beacon id (1-65535) and flash one board")
    parser.add_argument("--all", action="store_true",
                        help="flash every connected board, one after another (needs --first-id)")
    parser.add_argument("--first-id", type=int, help="with --all: the first board's id; then +1 each")
    parser.add_argument("--port", help="the board to flash when several are connected")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--bossac", help="Arduino's bossac fork (default: the one arduino-cli installed)")
    how.add_argument("--use-arduino-cli", action="store_true",
                     help="upload with `arduino-cli upload` instead of bossac")
    parser.add_argument("--arduino-cli", help="the arduino-cli to build (and upload) with")
    parser.add_argument("--out-dir", default=str(FIRMWARE_DIR / "build" / "firmware"),
                        help="where per-id builds go (default firmware/build/firmware/id-N/)")
    parser.add_argument("--timeout", type=float, default=BOOTLOADER_TIMEOUT_S,
                        help=f"seconds to wait for the bootloader (default {BOOTLOADER_TIMEOUT_S:g})")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="do not ask the flashed board for its id")
    args = parser.parse_args(argv)
    ids = [value for value in (args.beacon_id, args.first_id) if value is not None]
    if any(not 1 <= value <= 0xFFFF for value in ids):
        parser.error("beacon ids are 1-65535")
    if args.all:
        if args.image is not None or args.beacon_id is not None or args.first_id is None:
            parser.error("--all builds one image per board: give --first-id N and no image or --id "
                         "(one image for all would give every board the same id)")
        if args.port:
            parser.error("--all flashes every board; --port chooses one")
    elif args.first_id is not None:
        parser.error("--first-id goes with --all; for one board use --id N")
    elif (args.image is None) == (args.beacon_id is None):
        parser.error("say what to flash: an image (FILE.bin) or --id N (builds one)")
    return args


def run(args: argparse.Namespace, deps: Deps) -> None:
    if args.image is not None:
        check_image(args.image)
    uploader = find_uploader(args, deps)
    if uploader.version:
        deps.out.write(f"using {uploader.path} (bossac {uploader.version})\n")
    boards = choose_boards(args, deps)
    done: list[str] = []
    for number, board in enumerate(boards):
        beacon_id = args.first_id + number if args.all else args.beacon_id
        if beacon_id is not None and beacon_id > 0xFFFF:
            msg = f"ran out of beacon ids at {board.device}: ids stop at 65535; use a lower --first-id"
            raise FlashError(EXIT_USAGE, msg)
        label = f"[{number + 1}/{len(boards)}] {board.describe()}"
        deps.out.write(f"{label}{'' if beacon_id is None else f': beacon id {beacon_id}'}\n")
        try:
            image = args.image if beacon_id is None else build_image(beacon_id, args, deps)
            flash_board(board, image, beacon_id, uploader, args, deps)
        except FlashError as exc:
            if not done:
                raise
            msg = (f"{exc} (already flashed: {', '.join(done)}; to go on with this board alone: "
                   f"--port {board.device} --id {beacon_id})")
            raise FlashError(exc.code, msg) from exc
        done.append(f"{board.device} id {beacon_id}" if beacon_id is not None else board.device)
        deps.out.write(f"{label}: done\n")


def main(argv: Sequence[str] | None = None, deps: Deps | None = None) -> int:
    deps = deps or Deps()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse has printed the usage and the problem
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        run(args, deps)
    except FlashError as exc:
        sys.stderr.write(f"flash.py: {exc}\n")
        return exc.code
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
