"""A bounded pool of synthesis workers with a bounded queue in front of it.

A job is a function that returns an iterator (``lambda: synth.stream(text)``); a worker thread
runs it and hands its items to the event loop one by one. ``submit`` refuses a job at once
(``ServerBusy``) when the engine already runs as many streams as it keeps in real time
(``RealTime``, measured on the items' audio) or every worker is busy, and the queue is full,
so a client never waits without bound: an admitted stream starts at once and keeps up. The worker stays at most a few items ahead of its consumer, so a client that
stops reading holds back its own job, and ``Job.cancel`` (a client gone) stops the job at its
next item: the worker is free again within one chunk of audio.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

AHEAD = 4  # items a worker may make before its consumer takes them: bounds memory per client
_ITEM, _ERROR, _END = range(3)
_DONE = object()  # the end of a job's items


class ServerBusy(Exception):
    """The engine runs all the streams it can and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class RealTime:
    """How many streams the engine keeps in real time, from what its workers measured.

    An item of ``audio`` seconds made in ``wall`` seconds while ``streams`` ran (itself
    included) shows the engine making max(streams, cores) * audio / wall seconds of audio per
    second: below ``cores`` streams each has a core to itself, so more would go as fast. The
    estimate is the mean over recent items, less a ``margin`` so that streams keep ahead of
    playback rather than level with it.
    """

    def __init__(self, cores: int, margin: float = 0.8, window: int = 64):
        self.cores, self.margin = cores, margin
        self._rates: deque[float] = deque(maxlen=window)  # seconds of audio per second, engine-wide

    def record(self, wall: float, audio: float, streams: int) -> None:
        if wall > 0 and audio > 0:
            self._rates.append(max(streams, self.cores) * audio / wall)

    def streams(self) -> int | None:
        """Streams kept in real time (at least 1); None before anything was measured."""
        if not self._rates:
            return None
        return max(1, math.floor(self.margin * sum(self._rates) / len(self._rates)))


class Job:
    """The event loop's end of one job: ``async for item in job`` (re-raises the job's
    error); ``cancel()`` when the items are no longer wanted."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._items: asyncio.Queue = asyncio.Queue()
        self._room = threading.Semaphore(AHEAD)
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __aiter__(self) -> "Job":
        return self

    async def __anext__(self):
        kind, value = await self._items.get()
        if kind == _END:
            self._items.put_nowait((kind, value))  # every later call ends too
            raise StopAsyncIteration
        if kind == _ERROR:
            raise value
        self._room.release()
        return value

    # --- the worker's side ---

    def _put(self, kind: int, value=None) -> bool:
        """Hand an item over, waiting for room; False once the job is cancelled."""
        if kind == _ITEM:
            while not self._room.acquire(timeout=0.1):
                if self.cancelled:
                    return False
        if self.cancelled and kind == _ITEM:
            return False
        try:
            self._loop.call_soon_threadsafe(self._items.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.cancel()
            return False
        return True


class WorkerPool:
    """``workers`` threads running jobs, at most as many at once as the engine keeps in real
    time on ``cores`` cores, and room for ``queue`` more jobs waiting."""

    def __init__(self, workers: int, queue: int, cores: int | None = None):
        if workers < 1 or queue < 0:
            raise ValueError(f"need at least one worker and a queue of 0 or more, got {workers} and {queue}")
        self.workers, self.queue = workers, queue
        if cores is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.realtime = RealTime(cores)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="tts-worker")
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()  # admitted: running or waiting
        self._running = self._peak = self._cancelled = 0
        self._durations: deque[float] = deque(maxlen=32)  # seconds per recent job, for Retry-After

    def submit(self, make: Callable[[], Iterator], seconds: Callable[[object], float] | None = None) -> Job:
        """Queue ``make`` (called on a worker thread), whose items last ``seconds(item)`` of
        audio; raises ``ServerBusy`` past the queue. Must be called from the event loop the
        items are consumed on."""
        job = Job(asyncio.get_running_loop())
        with self._lock:
            if len(self._jobs) >= self.streams() + self.queue:
                raise ServerBusy(self._retry_after())
            self._jobs.add(job)
        self._executor.submit(self._run, job, make, seconds)
        return job

    def streams(self) -> int:
        """Jobs run at once: every worker until the engine's speed is measured, then no more
        than it keeps in real time."""
        kept = self.realtime.streams()
        return self.workers if kept is None else min(self.workers, kept)

    def stats(self) -> dict:
        with self._lock:
            return {"workers": self.workers, "queue": self.queue, "streams": self.streams(), "running": self._running,
                    "waiting": len(self._jobs) - self._running, "peak_running": self._peak,
                    "cancelled": self._cancelled}

    def shutdown(self) -> None:
        """Cancel every job and wait for the workers to stop."""
        with self._lock:
            for job in self._jobs:
                job.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _retry_after(self) -> int:
        # The queue moves one place in about a job's time divided among the workers.
        mean = sum(self._durations) / len(self._durations) if self._durations else 1.0
        return max(1, math.ceil(mean * (1 + self.queue) / self.workers))

    def _run(self, job: Job, make: Callable[[], Iterator], seconds: Callable[[object], float] | None) -> None:
        start = time.monotonic()
        with self._lock:
            self._running += 1
            self._peak = max(self._peak, self._running)
        items, stopped = None, job.cancelled  # its client may have left while it waited
        try:
            if not stopped:
                items = iter(make())
                while True:
                    made = time.monotonic()  # the making alone: not the wait for a slow client
                    item = next(items, _DONE)
                    if item is _DONE:
                        break
                    if seconds is not None:
                        with self._lock:
                            self.realtime.record(time.monotonic() - made, seconds(item), self._running)
                    if not job._put(_ITEM, item):
                        stopped = True
                        break
        except Exception as e:  # handed to the consumer, which turns it into an error reply
            job._put(_ERROR, e)
        finally:
            if hasattr(items, "close"):
                items.close()  # now, on this thread, not whenever the generator is collected
            job._put(_END)
            with self._lock:
                self._running -= 1
                self._jobs.discard(job)
                self._cancelled += stopped
                self._durations.append(time.monotonic() - start)
