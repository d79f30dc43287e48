"""``python -m tts.evaluate.merge PART.json PART.json ... --out ALL.json``: one report of its parts.

The parts judged the same voice on different held-out lines. An evaluation splits over
processes by its lines (``--start`` and ``--n``, one process per core): each part judges its
own lines, and the parts become the report that one run over all their lines would have
written, every number and interval taken again over all the lines.
Robustness and speed, judged once for a voice, come from the one part that has them.

Exit codes: 0 success; 2 an unreadable report, parts that judged another voice, sampling or
set of systems, or a line judged twice. Errors are one line on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tts.command import EXIT_OK, OneLineParser, run_command
from tts.evaluate.reports import ReportError, read_report

# What every part must share: the same voice, judged the same way.
SAME = ("voice", "corpus", "skipped", "sampling", "speaker")
ONCE = ("robustness", "speed")  # judged for the voice, not per line: at most one part has each


def merge(parts: list[dict], names: list[str] | None = None) -> dict:
    """The report of all ``parts``' lines, in the parts' order."""
    from tts.evaluate.cli import held_out_summary

    names = names or [f"part {i + 1}" for i in range(len(parts))]
    first = parts[0]
    for name, part in zip(names[1:], parts[1:]):
        for key in SAME:
            if part.get(key) != first.get(key):
                what = "speaker recordings (give every part the same --speaker, or skip similarity)" \
                    if key == "speaker" else key
                raise ReportError(f"{name} and {names[0]} differ in {what}: {part.get(key)!r} against {first.get(key)!r}")
        if set(part["systems"]) != set(first["systems"]):
            raise ReportError(f"{name} judged {sorted(part['systems'])}, {names[0]} {sorted(first['systems'])}")
    per_clip = {system: [clip for part in parts for clip in part["systems"][system]["clips"]]
                for system in first["systems"]}
    seen: dict[str, str] = {}
    for name, part in zip(names, parts):
        for clip in next(iter(part["systems"].values()), {"clips": []})["clips"]:
            if clip["id"] in seen:
                raise ReportError(f"line {clip['id']} is in both {seen[clip['id']]} and {name}")
            seen[clip["id"]] = name
    report = {key: first[key] for key in (*SAME, "definitions") if key in first}
    for key in ONCE:
        holders = [(name, part) for name, part in zip(names, parts) if key in part]
        if len(holders) > 1:
            raise ReportError(f"{key} was judged in {holders[0][0]} and {holders[1][0]}: keep it in one part (--skip {key})")
        if holders:
            report[key] = holders[0][1][key]
    report["lines"] = sum(part["lines"] for part in parts)
    report["timings_s"] = {}
    for part in parts:
        for key, seconds in part.get("timings_s", {}).items():
            report["timings_s"][key] = report["timings_s"].get(key, 0.0) + seconds
    report.update(held_out_summary(per_clip))
    return report


def main(argv: list[str] | None = None) -> int:
    def body() -> int:
        from tts.evaluate.cli import format_table, write_json

        p = OneLineParser(prog="python -m tts.evaluate.merge", description=__doc__.splitlines()[0])
        p.add_argument("parts", type=Path, nargs="+", help="reports of python -m tts.evaluate --out, on different lines")
        p.add_argument("--out", type=Path, required=True, help="the merged report (JSON)")
        args = p.parse_args(argv)
        if not args.out.parent.is_dir():
            raise ReportError(f"output folder does not exist: {args.out.parent}")
        report = merge([read_report(path) for path in args.parts], [str(path) for path in args.parts])
        print(format_table(report))
        write_json(args.out, report)
        return EXIT_OK

    return run_command("merge", body, usage=(ReportError,))


if __name__ == "__main__":
    sys.exit(main())
