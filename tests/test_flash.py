"""firmware/flash.py without hardware: ptys as the boards' serial ports, a scripted USB bus.

A ``FakeNano`` plays one board: while its sketch runs it lists as 2341:805a on an application pty;
a 1200-baud touch (seen through termios on that pty) makes it re-enumerate as its bootloader
(2341:005a) on another pty, after a gap of empty listings; an image arriving there (from the bossac
stand-in, firmware/test/standins/bossac) "resets" it into a sketch that answers ``version`` and
``id`` with the id compiled into that image. Time is a fake clock that only ``sleep`` moves, so the
deadlines are tested without waiting. The bossac and arduino-cli stand-ins are executables that
check their arguments and files and log every call; why not a SAM-BA protocol stand-in: flash.py
never speaks SAM-BA itself, it hands the port to bossac, so the stand-in checks that hand-over.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import select
import shutil
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from appliance.presence import protocol

ROOT = Path(__file__).resolve().parent.parent
STANDINS = ROOT / "firmware" / "test" / "standins"
BOSSAC = STANDINS / "bossac"
ARDUINO_CLI = STANDINS / "arduino-cli"
BOOT_GAP = 2  # empty listings while the board re-enumerates


def load_flash() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flash", ROOT / "firmware" / "flash.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["flash"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


flash = load_flash()


class Pty:
    """A serial port: the board holds the master, flash.py opens the slave's path."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.set_baud(termios.B115200)
        self.path = os.ttyname(self.slave)

    def baud(self) -> int:
        return int(termios.tcgetattr(self.slave)[5])

    def set_baud(self, speed: int) -> None:
        attrs = termios.tcgetattr(self.slave)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@dataclass
class FakeNano:
    """One Arduino Nano 33 BLE as USB and its two serial personalities show it."""

    location: str | None
    mode: str = "app"  # "app" (sketch running), "gap" (re-enumerating), "boot" (bootloader)
    beacon_id: int = 0  # what the sketch answers to `id`
    replies: dict[str, str] = field(default_factory=dict)  # other answers, e.g. an `err` reply
    ignores_touch: bool = False
    touched_at_1200: bool = False
    images: list[bytes] = field(default_factory=list)
    app: Pty = field(default_factory=Pty)
    boot: Pty = field(default_factory=Pty)
    _gap: int = 0
    _received: bytes = b""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._sketch, daemon=True)
        self._thread.start()

    def listing(self) -> Any:
        """The board's entry in a port listing now (None while it re-enumerates)."""
        if self.mode == "app" and self.app.baud() == termios.B1200 and not self.ignores_touch:
            self.touched_at_1200 = True
            self.mode, self._gap = "gap", BOOT_GAP
        if self.mode == "gap":
            self._gap -= 1
            if self._gap >= 0:
                return None
            self.mode = "boot"
        if self.mode == "boot" and self._take_image(self.boot.master):
            self.app.set_baud(termios.B115200)  # bossac -R: the sketch enumerates afresh
            self.mode = "app"
        if self.mode == "boot":
            return flash.Port(self.boot.path, 0x2341, 0x005A, self.location)
        return flash.Port(self.app.path, 0x2341, 0x805A, self.location)

    def _take_image(self, fd: int) -> bool:
        while select.select([fd], [], [], 0)[0]:
            self._received += os.read(fd, 65536)
        if not self._received.endswith(b"\n"):
            return False
        line, self._received = self._received, b""
        return self._adopt(line)

    def _adopt(self, line: bytes) -> bool:
        if not line.startswith(b"STANDIN-IMAGE "):
            return False
        image = bytes.fromhex(line.split(b" ", 1)[1].strip().decode())
        self.images.append(image)
        found = re.search(rb"BEACON_ID=(\d+)", image)
        self.beacon_id = int(found.group(1)) if found else 0
        return True

    def _sketch(self) -> None:
        """The sketch on the application port: answers like firmware/beacon/beacon_core.cpp."""
        pending = b""
        while not self._stop.is_set():
            if not select.select([self.app.master], [], [], 0.05)[0]:
                continue
            try:
                pending += os.read(self.app.master, 4096)
            except OSError:
                return
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if self._adopt(line):  # arduino-cli upload writes to the application port
                    continue
                command = line.strip().decode()
                replies = {protocol.VERB_VERSION: f"{protocol.REPLY_OK}firmware=0.1.0 protocol=1",
                           protocol.VERB_ID: f"{protocol.REPLY_OK}id={self.beacon_id}", **self.replies}
                reply = replies.get(command, f"{protocol.REPLY_ERR}unknown command (try help)")
                end = protocol.REPLY_END
                os.write(self.app.master, f"BLE beacon active{end}{reply}{end}".encode())

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.app.close()
        self.boot.close()


class FakeUsb:
    """The port listing flash.py sees: the boards' current entries plus other serial devices."""

    def __init__(self, *boards: FakeNano, others: tuple[Any, ...] = ()) -> None:
        self.boards = list(boards)
        self.others = list(others)
        self.calls = 0

    def __call__(self) -> list[Any]:
        self.calls += 1
        entries = [board.listing() for board in self.boards]
        return [*self.others, *(entry for entry in entries if entry is not None)]


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Run:
    code: int
    out: str
    err: str
    log: list[dict[str, Any]]

    def calls(self, tool: str) -> list[list[str]]:
        return [entry["argv"] for entry in self.log if entry["tool"] == tool]


@pytest.fixture
def boards() -> Iterator[list[FakeNano]]:
    made: list[FakeNano] = []
    yield made
    for board in made:
        board.close()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "beacon.ino.bin"
    path.write_bytes(b"stand-in image of beacon BEACON_ID=0\n")
    return path


class Flasher:
    """Runs flash.main in-process with the fakes; the stand-ins run as real processes."""

    def __init__(self, tmp_path: Path, boards: list[FakeNano]) -> None:
        self.tmp_path = tmp_path
        self.boards = boards
        self.log = tmp_path / "standins.log"
        self.time = FakeTime()
        # No Arduino data directory and on PATH only python3 (for the stand-ins) and make,
        # unless a test adds something.
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "python3").symlink_to(Path(sys.executable).resolve())
        for tool in ("make", "grep", "mkdir", "mv", "rm"):  # what firmware/Makefile's recipes use
            if (found := shutil.which(tool)) is not None:
                (self.bin / tool).symlink_to(found)
        self.environ = {"PATH": str(self.bin), "HOME": str(tmp_path / "home"),
                        "STANDIN_LOG": str(self.log)}

    def board(self, location: str | None = "1-1.2:1.0", **kwargs: Any) -> FakeNano:
        nano = FakeNano(location, **kwargs)
        self.boards.append(nano)
        return nano

    def run(self, *argv: str, usb: FakeUsb | None = None) -> Run:
        out = io.StringIO()
        deps = flash.Deps(list_ports=usb or FakeUsb(*self.boards), clock=self.time.clock,
                          sleep=self.time.sleep, out=out, environ=self.environ)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = flash.main(list(argv), deps)
        log = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        return Run(code, out.getvalue(), err.getvalue(), log)


@pytest.fixture
def flasher(tmp_path: Path, boards: list[FakeNano]) -> Flasher:
    return Flasher(tmp_path, boards)


def core_args(port: str, image: Path) -> list[str]:
    return [f"--port={port}", "-U", "-i", "-e", "-w", str(image), "-R"]


# -- one board ------------------------------------------------------------------------------


def test_touch_at_1200_baud_then_bossac_with_the_cores_arguments_on_the_bootloader_port(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board()
    started = time.monotonic()
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 0, run.err
    assert nano.touched_at_1200  # the application pty was set to 1200 baud (termios)
    assert run.calls("bossac")[-1] == core_args(nano.boot.path, image)
    assert nano.images == [image.read_bytes()]
    assert "resetting" in run.out and "bootloader at" in run.out
    assert "Write 37 bytes to flash" in run.out  # bossac's own progress, passed through
    assert "ok firmware=0.1.0 protocol=1, ok id=0" in run.out
    assert time.monotonic() - started < 5  # re-enumeration waits ran on the fake clock


def test_a_board_already_in_its_bootloader_is_flashed_without_a_touch(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board()
    nano.mode = "boot"
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 0, run.err
    assert not nano.touched_at_1200
    assert run.calls("bossac")[-1] == core_args(nano.boot.path, image)


def test_id_builds_the_firmware_with_that_id_and_the_board_answers_it(flasher: Flasher) -> None:
    nano = flasher.board()
    out_dir = flasher.tmp_path / "builds"
    run = flasher.run("--id", "7", "--bossac", str(BOSSAC), "--arduino-cli", str(ARDUINO_CLI),
                      "--out-dir", str(out_dir))
    assert run.code == 0, run.err
    compile_ = next(argv for argv in run.calls("arduino-cli") if argv[0] == "compile")
    assert "compiler.cpp.extra_flags=-DBEACON_ID=7" in compile_
    assert compile_[compile_.index("--output-dir") + 1] == str(out_dir / "id-7")
    assert run.calls("bossac")[-1] == core_args(nano.boot.path, out_dir / "id-7" / "beacon.ino.bin")
    assert nano.images == [b"stand-in image of beacon BEACON_ID=7\n"]
    assert "ok id=7" in run.out


def test_re_enumeration_under_a_new_name_without_a_usb_location_is_followed(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board(location=None)
    assert flasher.run(str(image), "--bossac", str(BOSSAC)).code == 0
    assert nano.images == [image.read_bytes()]


def test_arduino_cli_upload_gets_the_build_directory_and_the_sketchs_port(flasher: Flasher) -> None:
    nano = flasher.board()
    out_dir = flasher.tmp_path / "builds"
    run = flasher.run("--id", "12", "--use-arduino-cli", "--arduino-cli", str(ARDUINO_CLI),
                      "--out-dir", str(out_dir))
    assert run.code == 0, run.err
    upload = next(argv for argv in run.calls("arduino-cli") if argv[0] == "upload")
    assert upload == ["upload", "-b", "arduino:mbed_nano:nano33ble", "-p", nano.app.path,
                      "--input-dir", str(out_dir / "id-12")]
    assert not nano.touched_at_1200  # arduino-cli touches the board itself
    assert "ok id=12" in run.out


# -- several boards -------------------------------------------------------------------------


def test_all_flashes_every_board_in_usb_order_each_with_its_own_id(flasher: Flasher) -> None:
    second = flasher.board(location="1-1.3:1.0")
    first = flasher.board(location="1-1.2:1.0")
    run = flasher.run("--all", "--first-id", "20", "--bossac", str(BOSSAC),
                      "--arduino-cli", str(ARDUINO_CLI), "--out-dir", str(flasher.tmp_path / "b"))
    assert run.code == 0, run.err
    assert (first.beacon_id, second.beacon_id) == (20, 21)
    assert [argv[0] for argv in run.calls("bossac") if argv != ["--help"]] == [
        f"--port={first.boot.path}", f"--port={second.boot.path}"]
    assert "[1/2]" in run.out and "[2/2]" in run.out


def test_two_boards_without_all_or_port_are_refused_and_none_is_touched(
    flasher: Flasher, image: Path
) -> None:
    one, two = flasher.board(location="1-1.2:1.0"), flasher.board(location="1-1.3:1.0")
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 4
    assert "choose one with --port" in run.err and "--all --first-id" in run.err
    assert not one.touched_at_1200 and not two.touched_at_1200


def test_port_chooses_one_of_two_boards(flasher: Flasher, image: Path) -> None:
    one, two = flasher.board(location="1-1.2:1.0"), flasher.board(location="1-1.3:1.0")
    run = flasher.run(str(image), "--bossac", str(BOSSAC), "--port", two.app.path)
    assert run.code == 0, run.err
    assert (one.images, two.images) == ([], [image.read_bytes()])


def test_two_bootloaders_appearing_at_once_are_not_guessed_between(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board(location=None)
    stranger = FakeNano(None, mode="boot")  # another board someone double-tapped meanwhile
    flasher.boards.append(stranger)
    usb = FakeUsb(nano)

    def listing() -> list[Any]:
        ports = usb()
        return [*ports, stranger.listing()] if nano.mode == "boot" else ports

    run = flasher.run(str(image), "--bossac", str(BOSSAC), usb=listing)  # type: ignore[arg-type]
    assert run.code == 4
    assert "will not guess" in run.err
    assert nano.images == [] and stranger.images == []


# -- failures a user can act on -------------------------------------------------------------


def test_no_board_says_how_to_connect_one(flasher: Flasher, image: Path) -> None:
    other = flash.Port("/dev/ttyUSB0", 0x0403, 0x6001, "1-1.4:1.0")  # an FTDI adapter
    run = flasher.run(str(image), "--bossac", str(BOSSAC), usb=FakeUsb(others=(other,)))
    assert run.code == 3
    assert "no Arduino Nano 33 BLE found" in run.err and "double-tap" in run.err


def test_bootloader_that_never_appears_times_out_on_the_deadline(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board(ignores_touch=True)
    started, fake_start = time.monotonic(), flasher.time.now
    run = flasher.run(str(image), "--bossac", str(BOSSAC), "--timeout", "10")
    assert run.code == 5
    assert "did not come back as a bootloader" in run.err and "Double-tap its reset" in run.err
    assert 10 <= flasher.time.now - fake_start < 11
    assert time.monotonic() - started < 5
    assert nano.images == []


def test_debians_bossac_is_refused_with_where_the_right_one_comes_from(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board()
    flasher.environ["STANDIN_BOSSAC_VERSION"] = "1.9.1"
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 6
    assert "upstream bossac 1.9.1" in run.err
    assert "arduino-cli core install arduino:mbed_nano" in run.err
    assert "~/.arduino15/packages/arduino/tools/bossac/" in run.err and "--bossac PATH" in run.err
    assert not nano.touched_at_1200


def test_the_fork_that_arduino_cli_installed_wins_over_debians_on_path(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board()
    data = flasher.tmp_path / "arduino-data"
    for version in ("1.9.1-arduino2", "1.7.0-arduino3"):
        tools = data / "packages" / "arduino" / "tools" / "bossac" / version
        tools.mkdir(parents=True)
        (tools / "bossac").symlink_to(BOSSAC)
    (flasher.bin / "bossac").symlink_to(BOSSAC)  # Debian's, by the version the test gives it
    flasher.environ["ARDUINO_DIRECTORIES_DATA"] = str(data)
    run = flasher.run(str(image))
    assert run.code == 0, run.err
    assert f"using {data}/packages/arduino/tools/bossac/1.9.1-arduino2/bossac" in run.out
    assert nano.images == [image.read_bytes()]


def test_only_debians_bossac_on_path_is_refused(flasher: Flasher, image: Path) -> None:
    flasher.board()
    (flasher.bin / "bossac").symlink_to(BOSSAC)
    flasher.environ["STANDIN_BOSSAC_VERSION"] = "1.9.1"
    run = flasher.run(str(image))
    assert run.code == 6
    assert "Debian's bossa-cli" in run.err


def test_no_bossac_at_all_says_where_to_get_it(flasher: Flasher, image: Path) -> None:
    flasher.board()
    run = flasher.run(str(image))
    assert run.code == 6
    assert "no bossac found" in run.err and "arduino-cli core install arduino:mbed_nano" in run.err


def test_device_unsupported_from_an_unrecognised_bossac_is_explained(
    flasher: Flasher, image: Path
) -> None:
    flasher.board()
    flasher.environ["STANDIN_BOSSAC_VERSION"] = ""  # prints no version: flash.py tries it
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 6
    assert "cannot tell which bossac" in run.out
    assert "Device unsupported" in run.out and "upstream bossac" in run.err


def test_a_failed_upload_says_the_board_waits_in_its_bootloader(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board()
    flasher.environ["STANDIN_BOSSAC_FAIL"] = "1"
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 7
    assert "run this again and it is flashed directly" in run.err
    assert nano.mode == "boot"
    # ... and indeed it is, without a touch.
    del flasher.environ["STANDIN_BOSSAC_FAIL"]
    assert flasher.run(str(image), "--bossac", str(BOSSAC)).code == 0
    assert nano.images == [image.read_bytes()]


def test_a_failed_build_stops_before_any_board_is_touched(flasher: Flasher) -> None:
    nano = flasher.board()
    flasher.environ["STANDIN_ARDUINO_CLI_NO_CORE"] = "1"
    run = flasher.run("--id", "7", "--bossac", str(BOSSAC), "--arduino-cli", str(ARDUINO_CLI),
                      "--out-dir", str(flasher.tmp_path / "b"))
    assert run.code == 8
    assert "arduino-cli core install arduino:mbed_nano" in run.out  # from firmware/Makefile
    assert "building the firmware for beacon id 7 failed" in run.err
    assert not nano.touched_at_1200


def test_a_board_answering_another_id_than_built_fails_verification(
    flasher: Flasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    nano = flasher.board()
    original = FakeNano._adopt

    def keep_id_3(self: FakeNano, line: bytes) -> bool:
        adopted = original(self, line)
        self.beacon_id = 3  # the flashed image did not take: the old sketch still runs
        return adopted

    monkeypatch.setattr(FakeNano, "_adopt", keep_id_3)
    run = flasher.run("--id", "7", "--bossac", str(BOSSAC), "--arduino-cli", str(ARDUINO_CLI),
                      "--out-dir", str(flasher.tmp_path / "b"))
    assert run.code == 9
    assert "'ok id=3' to `id` (expected 'ok id=7')" in run.err
    assert f"python3 -m serial.tools.miniterm {nano.app.path} 115200" in run.err


def test_a_board_refusing_a_command_fails_verification_with_the_firmwares_message(
    flasher: Flasher, image: Path
) -> None:
    nano = flasher.board(replies={"version": "err bluetooth did not start; reset the board"})
    run = flasher.run(str(image), "--bossac", str(BOSSAC))
    assert run.code == 9
    assert f"{nano.app.path} refused 'version': bluetooth did not start; reset the board" in run.err
    assert "--no-verify skips this check" in run.err


@pytest.mark.parametrize(("argv", "problem"), [
    ([], "say what to flash"),
    (["x.bin", "--id", "3"], "say what to flash"),
    (["--all"], "--first-id"),
    (["--all", "--first-id", "1", "x.bin"], "same id"),
    (["--first-id", "1"], "goes with --all"),
    (["--id", "0"], "1-65535"),
    (["--id", "65536"], "1-65535"),
    (["--bossac", "b", "--use-arduino-cli", "--id", "1"], "not allowed with"),
])
def test_usage_errors_exit_2_with_the_reason(
    capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    assert flash.main(argv, flash.Deps(list_ports=FakeUsb())) == 2
    assert problem in capsys.readouterr().err


def test_a_hex_file_is_refused_because_bossac_writes_raw_images(flasher: Flasher, tmp_path: Path) -> None:
    hex_file = tmp_path / "beacon.ino.hex"
    hex_file.write_text(":00000001FF\n")
    run = flasher.run(str(hex_file), "--bossac", str(BOSSAC))
    assert run.code == 2
    assert "give the .bin" in run.err
