"""How long speech takes to start: ``python -m tts.bench_startup [--voice DIR] [--repeats 3]``.

Each figure is a fresh Python process, the way a user meets the engine: ``import tts``, the
import of the pipeline, and a one-word ``synthesize`` end to end; then,
inside one process, where the time of a one-word synthesis goes (import, voice load, first
audio chunk, the rest). "cold" runs with an empty numba cache (the kernels compile), "warm"
with the cache the cold run filled. Medians over ``--repeats`` runs; the machine's load
average is printed, since a busy machine slows every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run in the child: where one word's time goes, as JSON on the last line of stdout.
BREAKDOWN = """
import json, sys, time
start = time.perf_counter()
from tts import Synthesizer
imported = time.perf_counter()
synth = Synthesizer.load(sys.argv[1] or None, device="cpu")
loaded = time.perf_counter()
chunks = synth.stream("Hello.", seed=0)
next(chunks)
first = time.perf_counter()
for _ in chunks:
    pass
done = time.perf_counter()
print(json.dumps({"import": imported - start, "load": loaded - imported, "first chunk": first - loaded,
                  "rest": done - first, "vocoder": synth.vocoder.label, "torch": "torch" in sys.modules}))
"""


def _run(argv: list[str], env: dict) -> float:
    """Wall seconds of one process; raises if it fails."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tts.bench_startup", description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", type=Path, help="voice folder (default: the bundled voice)")
    p.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is shown (default 3)")
    args = p.parse_args(argv)
    python, voice = sys.executable, str(args.voice or "")
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "word.wav")
        synthesize = [python, "-m", "tts", "Hello.", "-o", out] + (["--voice", voice] if voice else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for name, command in (("import tts", [python, "-c", "import tts"]),
                              ("import tts.synthesizer", [python, "-c", "import tts.synthesizer"])):
            rows.append((name, "", statistics.median(_run(command, env) for _ in range(args.repeats))))
        breakdowns = {}
        for state in ("cold", "warm"):
            times, parts = [], []
            for i in range(args.repeats):
                # Cold: an empty cache for each process; warm: the one the first cold run filled.
                synthesize_cache = Path(tmp) / (f"numba-{i}" if state == "cold" else "numba-0")
                breakdown_cache = Path(tmp) / (f"numba-breakdown-{i}" if state == "cold" else "numba-0")
                times.append(_run(synthesize, {**env, "NUMBA_CACHE_DIR": str(synthesize_cache)}))
                child = subprocess.run([python, "-c", BREAKDOWN, voice],
                                       env={**env, "NUMBA_CACHE_DIR": str(breakdown_cache)},
                                       capture_output=True, text=True, check=True)
                parts.append(json.loads(child.stdout.strip().splitlines()[-1]))
            rows.append(("synthesize one word", state, statistics.median(times)))
            breakdowns[state] = parts
    print(f"load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs; median of {args.repeats}")
    print(f"{'what':32s} {'cache':6s} {'seconds':>8s}")
    for name, state, seconds in rows:
        print(f"{name:32s} {state:6s} {seconds:8.2f}")
    for state, parts in breakdowns.items():
        for key in ("import", "load", "first chunk", "rest"):
            print(f"{'  in process: ' + key:32s} {state:6s} {statistics.median(p[key] for p in parts):8.2f}")
    warm = breakdowns["warm"][0]
    print(f"vocoder: {warm['vocoder']}; PyTorch imported: {'yes' if warm['torch'] else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
