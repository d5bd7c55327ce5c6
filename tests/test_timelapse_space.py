"""The space timelapses may take: timelapse_max_bytes for all of them, timelapse_min_free_bytes
kept free on the data partition (a real, small tmpfs mounted for the test: we run as root).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import small_partition
from test_timelapse import ffmpeg, noise_frames, publisher_site  # noqa: F401 - fixtures

from appliance.timelapse.files import free_bytes

pytestmark = pytest.mark.usefixtures("ffmpeg")
MIB = 1024**2


async def test_a_small_budget_deletes_the_oldest_videos_then_pauses_recording(
        tmp_path: Path, noise_frames: list[bytes]) -> None:  # noqa: F811 - the fixture
    budget = 2 * MIB
    async with publisher_site(tmp_path / "data", timelapse_max_bytes=budget,
                              timelapse_keep_frames=True) as site:
        finished = []
        for n in range(2):
            recording = await site.start(f"print {n}")
            for frame in noise_frames[:3]:
                await site.frame(frame)
            await site.stop(recording)
            finished.append(await site.wait_state(recording, "ready"))
        assert all(entry["sizeBytes"] > 3 * len(noise_frames[0]) for entry in finished)

        recording = await site.start("the long one")
        frames = 0
        while not (await site.status())["paused"]:
            await site.frame(noise_frames[frames % len(noise_frames)])
            frames += 1
            assert frames < 40, "recording never paused"
        status = await site.status()
        assert "timelapse_max_bytes" in status["paused"]
        assert status["usedBytes"] <= budget
        assert status["deletedForSpace"] == 2  # both older videos went before recording paused
        assert [e["id"] for e in await site.get("/api/timelapses")] == [recording]
        assert not (site.data_dir / "timelapses" / str(finished[0]["id"])).exists()
        entry = await site.entry(recording)
        assert entry is not None and entry["paused"] == status["paused"]
        assert entry["frames"] == frames - 1  # the frame that did not fit was not kept


async def test_a_full_partition_pauses_recording_and_the_database_keeps_working(
        tmp_path: Path, noise_frames: list[bytes]) -> None:  # noqa: F811 - the fixture
    floor = 6 * MIB
    with small_partition(tmp_path / "data", 16) as data:
        async with publisher_site(data, timelapse_min_free_bytes=floor,
                                  storage_reserve_mib=1) as site:
            first = await site.start("first")
            for frame in noise_frames[:3]:
                await site.frame(frame)
            await site.stop(first)
            first_size = (await site.wait_state(first, "ready"))["sizeBytes"]

            second = await site.start("second")
            await site.frame(noise_frames[0])
            # Something else fills the card: with the first video gone, half a frame would
            # fit above the floor.
            filler = data / "filler"
            filler.write_bytes(b"\0" * (free_bytes(data) + first_size - floor
                                         - len(noise_frames[1]) // 2))
            await site.frame(noise_frames[1])
            status = await site.status()
            assert status["deletedForSpace"] == 1  # the oldest video went first ...
            assert await site.entry(first) is None
            assert status["paused"] and "timelapse_min_free_bytes" in status["paused"]  # ... then
            assert status["lowSpace"] is (status["freeBytes"] < floor)
            assert (await site.entry(second) or {})["frames"] == 1

            # The database still has its room: users, pairings and readings are safe.
            added = await site.client.post(f"{site.base}/api/users",
                                           json={"username": "bob", "password": "bobs password"})
            assert added.status_code == 201, added.text
            reading = await site.publisher.post(f"{site.base}/api/temphum",
                                                json={"temperature": 21.5, "humidity": 40})
            assert reading.status_code == 201, reading.text

            filler.unlink()
            await site.frame(noise_frames[2])
            status = await site.status()
            assert status["paused"] is None and (await site.entry(second) or {})["frames"] == 2
            await site.stop(second)
            ready = await site.wait_state(second, "ready")
            assert ready["frames"] == 2
