"""Write benchmark figures into benchmarks/RESULTS.md: one marked section per benchmark, replaced on each run.

Nothing in RESULTS.md is typed by hand: every section is written by the benchmark that measured it, with the
command that reproduces it, the machine and the date.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = (
    "# Benchmark results\n\n"
    "Every section below is written by the benchmark it names; rerun its command to refresh it.\n"
)


def machine() -> str:
    """One line naming the machine: CPU model, cores visible to this process, torch and its device."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{cpu}, {cores} core(s) available", f"Python {platform.python_version()}"]
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        parts.append(f"torch {torch.__version__} ({gpu})")
    except ImportError:
        pass
    return "; ".join(parts)


def command() -> str:
    """The command line that ran this benchmark, as a user would type it."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])


SUMMARY_ENV = "LATENTWALK_BENCH_SUMMARY"


def summary(line: str) -> None:
    """Print a benchmark's headline ratio; under ``run_all.py`` also append it to the run's summary file."""
    print(f"summary: {line}", flush=True)
    target = os.environ.get(SUMMARY_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def write_section(name: str, body: str, *, cmd: str | None = None, path: Path = RESULTS) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body`` plus command, machine and date."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    section = (
        f"{start}\n{body.rstrip()}\n\nCommand: `{cmd or command()}`  \nMachine: {machine()}  \nMeasured: {stamp}\n{end}"
    )
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
