"""Admission lanes: bounded threads, fast refusal beyond the bound, timed-out work never starts."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from iconosearch import deadline
from iconosearch.api.admission import Lane
from iconosearch.api.problems import ProblemError


def test_full_lane_refuses_at_once_and_frees_slots_when_work_ends() -> None:
    release = threading.Event()
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        release.wait(10)
        return i

    async def go() -> None:
        lane = Lane("image", workers=1, queue=1)
        first = asyncio.create_task(lane.run(work, 1, timeout_s=10))
        second = asyncio.create_task(lane.run(work, 2, timeout_s=10))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        with pytest.raises(ProblemError) as err:
            await lane.run(work, 3, timeout_s=10)
        assert err.value.status == 503 and err.value.code == "busy"
        assert time.monotonic() - t0 < 1.0  # refused, not queued
        release.set()
        assert await first == 1 and await second == 2
        assert await lane.run(work, 4, timeout_s=10) == 4
        lane.close()

    asyncio.run(go())
    assert 3 not in started


def test_work_whose_request_timed_out_never_starts_and_running_work_stops() -> None:
    release = threading.Event()
    ran: list[str] = []

    def blocker() -> None:
        ran.append("blocker")
        release.wait(10)

    def queued() -> None:
        ran.append("queued")

    def cooperative() -> None:
        time.sleep(0.3)
        deadline.check()  # past the deadline: stops here
        ran.append("after-deadline")

    async def go() -> None:
        lane = Lane("search", workers=1, queue=4)
        blocking = asyncio.create_task(lane.run(blocker, timeout_s=10))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError):
            await lane.run(queued, timeout_s=0.1)
        release.set()
        await blocking
        with pytest.raises(TimeoutError):
            await lane.run(cooperative, timeout_s=0.1)
        await asyncio.sleep(0.5)
        assert lane.in_use == 0
        lane.close()

    asyncio.run(go())
    assert ran == ["blocker"]
