"""Work spread over worker processes: a pool whose workers start clean and end with their
parent, and a progress bar that leaves the workers' warm-up out of its estimate.

    with worker_pool(4, initializer, (args,)) as pool:
        for result in WarmupProgress(pool.map(work, jobs), total=len(jobs), desc="features"):
            ...

Workers are spawned, never forked: a child forked from a process whose torch thread pools
have run can wait forever on a lock that no thread of its own will release (loading the
neural G2P did), and it inherits the parent's signal handlers, so SIGTERM does not end it
either. A spawned worker imports what it needs itself; whatever it is given travels
pickled, so jobs name their inputs explicitly.

When the block that uses the pool raises (an error, Ctrl-C, SIGTERM turned into
``tts.command.Terminated``), the pool's workers are ended before the exception goes on,
whatever they are doing, so that a stopped command leaves no process behind.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm

# A worker that ignores SIGTERM (or is stuck where no signal handler runs) gets SIGKILL after this.
GRACE_S = 2.0


def _start_worker(initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    # Ctrl-C reaches the whole process group; the parent answers it by ending the pool, so a
    # worker's own KeyboardInterrupt would only add a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` at once: cancel what has not started, terminate the workers, reap them."""
    # The executor names its processes only privately (before Python 3.14's terminate_workers,
    # which does not reap them); taken before shutdown, which forgets them.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()


@contextmanager
def worker_pool(workers: int, initializer: Callable[..., Any] | None = None,
                initargs: tuple = ()) -> Iterator[ProcessPoolExecutor]:
    """A process pool of ``workers`` spawned workers, each running ``initializer(*initargs)``
    first; shut down when the block ends, its workers ended when the block raises."""
    pool = ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(initializer, initargs))
    try:
        yield pool
    except BaseException:
        _end_workers(pool)
        raise
    pool.shutdown()


class WarmupProgress(tqdm):
    """A progress bar whose rate, and so its ETA, is measured from the first item on.

    The first result of a pool carries the workers' start-up (imports, models loaded), often
    many times the time of an item: a rate measured over it promised a ten-minute wait for a
    build that then ended at once. The first item is counted, not timed."""

    def __init__(self, *args, **kwargs):
        self._warm = False
        super().__init__(*args, **kwargs)

    def update(self, n: float = 1) -> bool | None:
        if self._warm or self.disable or not n:
            return super().update(n)
        self._warm = True
        # From here on, tqdm's rate counts items past `initial` over time past `last_print_t`.
        self.n += n
        self.initial = self.last_print_n = self.n
        self.last_print_t = self._time()
        self.refresh()
        return True

    def close(self) -> None:
        # The last line's rate is the average over the whole run, warm-up included, as it took.
        if self._warm:
            self.initial = 0
        super().close()
