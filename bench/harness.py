"""The benchmark runner: every case runs side by side with its baseline, reported as ratios.

A :class:`Case` has a ``setup`` that builds its inputs once, a ``baseline`` and a
``candidate`` callable over them. The runner warms both up, then alternates
them ``repeat`` times (baseline, candidate, baseline, ...) so drift on a busy
machine hits both alike, and reports for each the median and the min–max of the
wall times, the ratio of medians (candidate / baseline), and throughput when
the callables return an item count. Speed is only ever judged here, never in
the tests.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Case:
    """One measurement: candidate vs baseline on the same inputs."""

    group: str
    name: str
    setup: Callable[[], Any]
    baseline: Callable[[Any], Any]
    candidate: Callable[[Any], Any]
    baseline_label: str = "baseline"
    candidate_label: str = "parquedb-ibis"
    goal: str = ""  # e.g. "ratio <= 1.10", shown next to the result
    max_ratio: float | None = None
    repeat: int = 5
    warmup: int = 1
    teardown: Callable[[Any], None] | None = None
    unit: str = "items"
    notes: Callable[[Any], str] | None = None  # extra figures measured in setup/run (e.g. peak memory)


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    items: int | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float | None:
        return self.items / self.median if self.items and self.median > 0 else None


@dataclass
class Result:
    case: Case
    baseline: Timing
    candidate: Timing
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.candidate.median / self.baseline.median if self.baseline.median > 0 else float("inf")

    @property
    def met(self) -> bool | None:
        return None if self.case.max_ratio is None else self.ratio <= self.case.max_ratio


def _time(fn: Callable[[Any], Any], state: Any, timing: Timing) -> None:
    gc.collect()
    start = time.perf_counter()
    out = fn(state)
    timing.seconds.append(time.perf_counter() - start)
    if isinstance(out, int) and not isinstance(out, bool):
        timing.items = out


def run_case(case: Case, log: Callable[[str], None] = print) -> Result:
    """Set up, warm up, then alternate baseline and candidate ``repeat`` times."""
    log(f"  {case.group} / {case.name} ...")
    state = case.setup()
    try:
        scratch = Timing()
        for _ in range(case.warmup):
            _time(case.baseline, state, scratch)
            _time(case.candidate, state, scratch)
        base, cand = Timing(), Timing()
        for _ in range(case.repeat):
            _time(case.baseline, state, base)
            _time(case.candidate, state, cand)
        note = case.notes(state) if case.notes else ""
    finally:
        if case.teardown:
            case.teardown(state)
    return Result(case, base, cand, note)


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _timing_cell(t: Timing, unit: str) -> str:
    cell = f"{_fmt(t.median)} ({_fmt(min(t.seconds))}–{_fmt(max(t.seconds))})"
    if t.throughput:
        cell += f", {t.throughput:,.0f} {unit}/s"
    return cell


def report(results: Iterable[Result]) -> str:
    """A Markdown report: one table row per case."""
    lines = [
        "# Benchmark report",
        "",
        f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
        f"times are medians (min–max) over the repeats, ratio = candidate / baseline medians.",
        "",
        "| group | case | baseline | candidate | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for r in results:
        c = r.case
        verdict = "" if r.met is None else (" ✅" if r.met else " ❌")
        lines.append(
            f"| {c.group} | {c.name} | {c.baseline_label}: {_timing_cell(r.baseline, c.unit)} "
            f"| {c.candidate_label}: {_timing_cell(r.candidate, c.unit)} | {r.ratio:.2f}× | {c.goal}{verdict} |"
        )
        if r.note:
            notes.append(f"- {c.group} / {c.name}: {r.note}")
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n"


def to_json(results: Iterable[Result]) -> list[dict[str, Any]]:
    return [
        {
            "group": r.case.group,
            "case": r.case.name,
            "baseline": {"label": r.case.baseline_label, "seconds": r.baseline.seconds, "items": r.baseline.items},
            "candidate": {"label": r.case.candidate_label, "seconds": r.candidate.seconds, "items": r.candidate.items},
            "ratio": r.ratio,
            "note": r.note,
            "goal": r.case.goal,
            "met": r.met,
        }
        for r in results
    ]


def write(results: list[Result], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(to_json(results), indent=2))
    path = out_dir / "report.md"
    path.write_text(report(results))
    return path
