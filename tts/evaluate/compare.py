"""``python -m tts.evaluate.compare BASE.json NEW.json``: is NEW better than BASE, beyond chance?

Two reports of ``python -m tts.evaluate --out`` on the same held-out lines. For each system in
both (the engine, copy-synthesis, ...), the paired difference NEW - BASE of WER, DNSMOS OVRL,
periodicity, speaker similarity and the vocoder's level against its mel in each frequency
range, with its 95% bootstrap interval: the same lines are resampled for both, so what the
lines have in common (a hard sentence) cancels out. A difference whose interval excludes 0
is called better or worse (periodicity and level: higher or lower, as the teacher's, not the
most, is the aim); otherwise, no difference is shown.

Exit codes: 0 success; 2 unreadable reports or no lines in common. Errors are one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tts.command import EXIT_OK, OneLineParser, run_command
from tts.evaluate.metrics import LEVEL_ROWS, bootstrap_interval, mean_statistic, wer_statistic
from tts.evaluate.reports import ReportError, read_report

# key, label, digits, sign of "better" (periodicity: no sign; nearer the teacher's is better, so
# the comparison only says whether it moved).
METRICS = (("wer", "WER", 3, -1), ("ovrl", "DNSMOS OVRL", 2, +1), ("periodicity", "periodicity", 3, 0),
           ("similarity", "speaker similarity", 3, +1),
           *((key, label, digits, 0) for key, label, digits in LEVEL_ROWS))


def paired(base: list[dict], new: list[dict], key: str) -> dict | None:
    """NEW - BASE of one metric over the lines both judged, with its paired bootstrap interval;
    None when either lacks the metric."""
    by_id = {c["id"]: c for c in base}
    pairs = [(by_id[c["id"]], c) for c in new if c["id"] in by_id]
    if not pairs:
        raise ReportError("the reports have no held-out lines in common")
    if key == "wer":
        if not all("errors" in b and "errors" in n for b, n in pairs):
            return None
        words = [b["words"] for b, _ in pairs]
        base_stat = wer_statistic([b["errors"] for b, _ in pairs], words)
        new_stat = wer_statistic([n["errors"] for _, n in pairs], words)
        value = (sum(n["errors"] for _, n in pairs) - sum(b["errors"] for b, _ in pairs)) / max(sum(words), 1)
    else:
        if not all(b.get(key) is not None and n.get(key) is not None for b, n in pairs):
            return None
        base_stat = mean_statistic([b[key] for b, _ in pairs])
        new_stat = mean_statistic([n[key] for _, n in pairs])
        value = float(np.mean([n[key] - b[key] for b, n in pairs]))
    lo, hi = bootstrap_interval(lambda idx: new_stat(idx) - base_stat(idx), len(pairs))
    return {"lines": len(pairs), "difference": value, "ci": (lo, hi)}


def compare(base: dict, new: dict) -> list[dict]:
    rows = []
    for system in base["systems"]:
        if system not in new["systems"] or system == "teacher":
            continue
        for key, label, digits, better_sign in METRICS:
            result = paired(base["systems"][system]["clips"], new["systems"][system]["clips"], key)
            if result is None:
                continue
            lo, hi = result["ci"]
            if not (lo > 0 or hi < 0):  # the interval includes no difference
                verdict = "no difference"
            elif better_sign:
                verdict = "better" if better_sign * result["difference"] > 0 else "worse"
            else:
                verdict = "higher" if result["difference"] > 0 else "lower"
            rows.append({"system": system, "metric": label, "digits": digits, "base": base["systems"][system][key],
                         "new": new["systems"][system][key], **result, "verdict": verdict})
    return rows


def format_rows(rows: list[dict], base: str, new: str) -> str:
    lines = [f"paired over the same held-out lines: NEW {new} - BASE {base} (95% bootstrap interval)",
             "| system | metric | lines | base | new | new - base | interval | verdict |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        d = r["digits"]
        lines.append(f"| {r['system']} | {r['metric']} | {r['lines']} | {r['base']:.{d}f} | {r['new']:.{d}f} | "
                     f"{r['difference']:+.{d}f} | [{r['ci'][0]:+.{d}f}, {r['ci'][1]:+.{d}f}] | {r['verdict']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        p = OneLineParser(prog="python -m tts.evaluate.compare", description=__doc__.splitlines()[0])
        p.add_argument("base", type=Path, help="report of the voice to beat")
        p.add_argument("new", type=Path, help="report of the candidate, on the same lines")
        args = p.parse_args(argv)
        print(format_rows(compare(read_report(args.base), read_report(args.new)), args.base, args.new))
        return EXIT_OK

    return run_command("compare", body, usage=(ReportError,))


if __name__ == "__main__":
    sys.exit(main())
