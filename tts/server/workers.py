"""A bounded pool of synthesis workers with a bounded queue in front of it.

A job is a function that returns an iterator (``lambda: synth.stream(text)``); a worker thread
runs it and hands its items to the event loop one by one. ``submit`` refuses a job at once
(``ServerBusy``) when every worker is busy and the queue is full, so a client never waits
without bound. The worker stays at most a few items ahead of its consumer, so a client that
stops reading holds back its own job, and ``Job.cancel`` (a client gone) stops the job at its
next item: the worker is free again within one chunk of audio.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

AHEAD = 4  # items a worker may make before its consumer takes them: bounds memory per client
_ITEM, _ERROR, _END = range(3)


class ServerBusy(Exception):
    """Every worker is busy and the queue is full."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


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
    """``workers`` threads running jobs, and room for ``queue`` more jobs waiting."""

    def __init__(self, workers: int, queue: int):
        if workers < 1 or queue < 0:
            raise ValueError(f"need at least one worker and a queue of 0 or more, got {workers} and {queue}")
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="tts-worker")
        self._lock = threading.Lock()
        self._jobs: set[Job] = set()  # admitted: running or waiting
        self._running = self._peak = self._cancelled = 0
        self._durations: deque[float] = deque(maxlen=32)  # seconds per recent job, for Retry-After

    def submit(self, make: Callable[[], Iterator]) -> Job:
        """Queue ``make`` (called on a worker thread); raises ``ServerBusy`` past the queue.
        Must be called from the event loop the items are consumed on."""
        job = Job(asyncio.get_running_loop())
        with self._lock:
            if len(self._jobs) >= self.workers + self.queue:
                raise ServerBusy(self._retry_after())
            self._jobs.add(job)
        self._executor.submit(self._run, job, make)
        return job

    def stats(self) -> dict:
        with self._lock:
            return {"workers": self.workers, "queue": self.queue, "running": self._running,
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

    def _run(self, job: Job, make: Callable[[], Iterator]) -> None:
        start = time.monotonic()
        with self._lock:
            self._running += 1
            self._peak = max(self._peak, self._running)
        items, stopped = None, job.cancelled  # its client may have left while it waited
        try:
            if not stopped:
                items = make()
                for item in items:
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
