"""The timelapse rules without I/O: when a print starts, changes layer and ends; the settings;
atomic files and what a start-up sweeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import load_settings
from appliance.timelapse import files
from appliance.timelapse.render import ffmpeg_args
from appliance.timelapse.watch import Change, PrintWatcher


def test_a_print_starts_at_running_marks_each_new_layer_and_ends_at_finish() -> None:
    watcher = PrintWatcher()
    assert watcher.observe("IDLE", 0, "benchy") == Change()
    assert watcher.observe("PREPARE", 0, "benchy") == Change()
    assert watcher.observe("RUNNING", 1, "benchy") == Change(started=True, new_layer=True)
    assert watcher.observe("RUNNING", 1, "benchy") == Change()  # a temperature report
    assert watcher.observe("RUNNING", 3, "benchy") == Change(new_layer=True)  # 2 was missed
    assert watcher.observe("PAUSE", 3, "benchy") == Change()
    assert watcher.observe(None, None, None) == Change()  # the printer away: nothing ends
    assert watcher.observe("RUNNING", 4, "benchy") == Change(new_layer=True)
    assert watcher.observe("FINISH", 4, "benchy") == Change(ended=True)
    assert watcher.observe("FINISH", 4, "benchy") == Change()


@pytest.mark.parametrize("end", ["FAILED", "IDLE"])
def test_a_failed_or_cancelled_print_ends_too(end: str) -> None:
    watcher = PrintWatcher()
    watcher.observe("RUNNING", 5, "benchy")
    assert watcher.observe(end, 0, "benchy") == Change(ended=True)


def test_a_new_job_without_the_old_ones_end_ends_it_and_starts_another() -> None:
    watcher = PrintWatcher()
    watcher.observe("RUNNING", 30, "benchy")
    assert watcher.observe("RUNNING", 1, "cube") == Change(started=True, ended=True, new_layer=True)
    assert watcher.job == "cube"


def test_timelapse_settings_have_bounds_and_say_what_is_accepted() -> None:
    settings = load_settings(env={"APPLIANCE_TIMELAPSE_FPS": "24",
                                  "APPLIANCE_TIMELAPSE_KEEP_FRAMES": "yes"})
    assert (settings.timelapse_fps, settings.timelapse_keep_frames) == (24, True)
    assert settings.timelapse_max_bytes == 4 * 1024**3
    assert settings.timelapse_min_free_bytes == 1024**3
    with pytest.raises(ConfigError, match=r"timelapse_fps='0'.*from 1 to 120"):
        load_settings(env={"APPLIANCE_TIMELAPSE_FPS": "0"})
    with pytest.raises(ConfigError, match=r"timelapse_mode='hourly'.*layer, interval, or empty"):
        load_settings(env={"APPLIANCE_TIMELAPSE_MODE": "hourly"})
    with pytest.raises(ConfigError, match=r"timelapse_min_free_bytes='10'.*from 1048576"):
        load_settings(env={"APPLIANCE_TIMELAPSE_MIN_FREE_BYTES": "10"})
    # layer without printer_host is allowed: the Settings page may link a printer later.
    assert load_settings(env={"APPLIANCE_TIMELAPSE_MODE": "layer"}).timelapse_mode == "layer"


def test_frames_are_written_whole_and_a_start_up_sweeps_half_files_and_orphans(
        tmp_path: Path) -> None:
    recording = files.RecordingFiles(tmp_path, 7)
    recording.create()
    assert {(p.stat().st_mode & 0o777) for p in (recording.dir.parent, recording.dir,
                                                 recording.frames_dir)} == {0o700}
    recording.add_frame(1, "image/jpeg", b"\xff\xd8one")
    recording.add_frame(2, "image/png", b"\x89PNGtwo")
    assert [p.name for p in recording.frames()] == ["000001.jpg", "000002.png"]
    (recording.frames_dir / ".000003.jpg.tmp").write_bytes(b"cut")
    (recording.dir / ".video.mp4.tmp").write_bytes(b"cut")
    assert [p.name for p in recording.frames()] == ["000001.jpg", "000002.png"]
    assert recording.sweep_parts() == 2
    orphan = files.RecordingFiles(tmp_path, 8)
    orphan.create()
    assert files.sweep_orphans(tmp_path, [7]) == [orphan.dir]
    assert recording.dir.is_dir() and not orphan.dir.exists()
    assert recording.size() == len(b"\xff\xd8one") + len(b"\x89PNGtwo")


def test_ffmpeg_runs_niced_with_bounded_threads_into_a_temporary_name(tmp_path: Path) -> None:
    args = ffmpeg_args("/usr/bin/ffmpeg", pattern="*.jpg", fps=30, size=(1280, 720),
                       output=tmp_path / ".video.mp4.tmp")
    assert args[:3] == ["nice", "-n", "19"]
    assert args[args.index("-c:v") + 1] == "libx264"
    assert args[args.index("-pix_fmt") + 1] == "yuv420p"
    assert [args[i + 1] for i, a in enumerate(args) if a == "-threads"] == ["1", "2"]
    assert args[-3:] == ["-f", "mp4", str(tmp_path / ".video.mp4.tmp")]
    assert "tpad=stop_mode=clone:stop_duration=1.0" in args[args.index("-vf") + 1]
