"""Reading the reports that ``python -m tts.evaluate --out`` writes, for the tools that take
them back (``compare``, ``merge``)."""

from __future__ import annotations

import json
from pathlib import Path


class ReportError(ValueError):
    """A report that cannot be read or used: its message is the user's one error line."""


def read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read report {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(report, dict) or not isinstance(report.get("systems"), dict):
        raise ReportError(f"{path} is not a report of python -m tts.evaluate --out")
    return report
