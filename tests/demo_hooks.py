"""``python -m tests.demo_hooks ARGS``: the web demo (``python -m tts.demo ARGS``) with one hook
for tests that need requests to overlap or to wait.

With ``DEMO_HOLD_DIR`` set, a request whose seed is ``HOLD_FROM`` or more stops after its
first audio chunk has been handed out: it writes ``held-SEED`` into that folder and waits
there, in the middle of its first sentence, until the test writes ``release-SEED``. A test
that sees several ``held-`` files at once knows those requests were all generating at the
same time; one that keeps a request held knows the server's workers are busy. Every other
request, and everything else the demo does, is untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_FROM = 1000
HOLD_LIMIT_S = 300  # a test that never releases fails instead of hanging the server


def _install(folder: Path) -> None:
    from tts.synthesizer import Synthesizer

    stream = Synthesizer.stream

    def held_stream(self, text, seed=0, rate=1.0, **options):
        for i, chunk in enumerate(stream(self, text, seed=seed, rate=rate, **options)):
            yield chunk
            if i == 0 and seed >= HOLD_FROM:
                (folder / f"held-{seed}").touch()
                deadline = time.monotonic() + HOLD_LIMIT_S
                while not (folder / f"release-{seed}").exists():
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"request with seed {seed} was never released")
                    time.sleep(0.02)

    Synthesizer.stream = held_stream


if __name__ == "__main__":
    if os.environ.get("DEMO_HOLD_DIR"):
        _install(Path(os.environ["DEMO_HOLD_DIR"]))
    from tts.demo.app import main

    raise SystemExit(main())
