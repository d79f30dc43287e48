"""Robustness: texts that trip attention models, spoken by the engine and timed against the
teacher speaking the same normalized words.

A text passes when nothing raised, every sentence's attention reached its last symbol (EOS)
and never moved back, and its speech lasts 0.67-1.5x the teacher's (both trimmed of silence
at the ends). Sentences that ran to the decoder's step limit are counted too: the done head
never fired, which is how a stall on a symbol ends.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tts.evaluate.metrics import attention_checks, speech_seconds

DURATION_RANGE = (0.67, 1.5)

TEXTS: list[tuple[str, str]] = [
    ("long", "When the last of the evening trains had left the little station at the edge of the "
             "marsh, the old signalman walked slowly along the empty platform, checking each lamp "
             "and each door, listening to the wind in the reeds and the distant cry of the birds, "
             "and thinking, as he did every night for thirty years, of the long road that had "
             "brought him from the noisy city to this quiet and forgotten place."),
    ("long", "The committee, having considered the evidence presented by the witnesses over the "
             "course of several weeks, together with the written statements of the officers who "
             "had been on duty that morning and the reports of the physicians who examined the "
             "wounded, concluded that no single person could be held responsible for the series "
             "of errors that had led to the tragedy, and recommended sweeping changes."),
    ("repetition", "No, no, no, no, no, no, no, no, no, no."),
    ("repetition", "Buffalo buffalo Buffalo buffalo buffalo buffalo Buffalo buffalo."),
    ("repetition", "I said that that that that man used was wrong, and that is that."),
    ("numbers", "The bill came to $1,234,567.89, some 42% more than the 3,000 pounds first budgeted."),
    ("numbers", "Call 555-0142 before 7:45 p.m., or send 12 or 13 boxes of 144 each."),
    ("dates", "On March 3rd, 2025, and again on 12/25/1999, the meeting began at 9 a.m."),
    ("dates", "The treaty was signed in 1648, revised in the 1920s, and abandoned on July 4, 1976."),
    ("single word", "Yes."),
    ("single word", "A."),
    ("single word", "Oh?"),
    ("question", "Did you really think that nobody would notice the missing money?"),
    ("question", "Where were you, and why didn't you call?"),
    ("tongue twister", "She sells seashells by the seashore, and the shells she sells are surely seashells."),
    ("tongue twister", "Peter Piper picked a peck of pickled peppers."),
    ("tongue twister", "Red lorry, yellow lorry, red lorry, yellow lorry."),
    ("acronyms", "The FBI, the CIA and NASA met at the U.N. in New York."),
]


def check_text(synth, text: str, teacher_seconds: Callable[[str], float], seed: int = 0) -> dict:
    """Speak ``text`` with the engine and judge it; ``teacher_seconds(normalized text)`` is how
    long the teacher takes to say it."""
    from tts.text import normalize

    record = {"text": text, "error": None, "sentences": 0, "reached_end": True, "moved_back": False,
              "hit_step_limit": 0, "seconds": None, "teacher_seconds": None, "duration_ratio": None}
    try:
        pieces, limit = [], synth.acoustic.config.max_steps_per_symbol
        for chunk in synth.stream(text, seed=seed):
            pieces.append(chunk.audio)
            if chunk.last:
                checks = attention_checks(chunk.alignment)
                record["sentences"] += 1
                record["reached_end"] &= checks["reached_end"]
                record["moved_back"] |= checks["moved_back"]
                record["hit_step_limit"] += checks["steps"] >= limit * chunk.alignment.shape[1]
        record["seconds"] = speech_seconds(np.concatenate(pieces), synth.voice.audio)
    except Exception as e:  # noqa: BLE001 - any exception is the failure being measured
        record["error"] = f"{type(e).__name__}: {e}"
        record["passed"] = False
        return record
    record["teacher_seconds"] = teacher_seconds(normalize(text))
    if record["teacher_seconds"] > 0:
        record["duration_ratio"] = record["seconds"] / record["teacher_seconds"]
    ratio = record["duration_ratio"]
    record["duration_ok"] = ratio is not None and DURATION_RANGE[0] <= ratio <= DURATION_RANGE[1]
    record["passed"] = record["reached_end"] and not record["moved_back"] and record["duration_ok"]
    return record


def summarize(records: list[dict]) -> dict:
    """Counts of texts passing each check (over all texts)."""
    ran = [r for r in records if r["error"] is None]
    return {"texts": len(records), "passed": sum(r["passed"] for r in records),
            "no_exception": len(ran),
            "reached_end": sum(r["reached_end"] for r in ran),
            "never_moved_back": sum(not r["moved_back"] for r in ran),
            "duration_ok": sum(r["duration_ok"] for r in ran),
            "hit_step_limit": sum(r["hit_step_limit"] > 0 for r in ran)}


def failures(records: list[dict]) -> list[str]:
    """One line per failing text, saying what failed."""
    lines = []
    for r in records:
        if r["passed"]:
            continue
        if r["error"]:
            why = r["error"]
        else:
            why = ", ".join(w for w, bad in [
                ("attention did not reach the end", not r["reached_end"]),
                ("attention moved back", r["moved_back"]),
                (f"duration {r['duration_ratio']:.2f}x the teacher's" if r["duration_ratio"] is not None
                 else "no teacher duration", not r["duration_ok"]),
                (f"{r['hit_step_limit']} sentence(s) ran to the step limit", r["hit_step_limit"] > 0)] if bad)
        lines.append(f"{r['text'][:50]!r}: {why}")
    return lines
