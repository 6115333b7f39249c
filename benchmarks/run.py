"""``make bench``: run every ``benchmarks/bench_*.py``, print one table, write ``benchmarks/RESULTS.md``.

Each script runs in its own subprocess with this interpreter and its default arguments (so one
script's memory never inflates another's peak), its output streamed as it comes; the
``BENCH_RESULT`` lines it emits (``harness.emit``) are collected into one table: benchmark, case,
ours (with unit), baseline, ratio, target, pass/fail, peak RSS. A script that crashes, times out
or emits nothing is itself a failed row. Exit status 1 when any row failed.

    .venv/bin/python benchmarks/run.py                      # everything
    .venv/bin/python benchmarks/run.py --only pipeline      # bench_pipeline.py only (repeatable, or a,b)

With ``--only`` the report keeps the rows of the benchmarks it did not run from the report it
replaces, and says when those were measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness import PREFIX, Result, parse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_TIMEOUT = 600.0


@dataclass
class ScriptRun:
    name: str  # "pipeline" for bench_pipeline.py
    path: Path
    returncode: int | None = None
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    timed_out: bool = False
    results: list[Result] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # the last output lines, for a crash

    @property
    def crashed(self) -> bool:
        return self.timed_out or self.returncode != 0

    def rows(self) -> list[Result]:
        """Its results, plus one failed row when it crashed or reported nothing."""
        rows = list(self.results)
        if self.crashed:
            why = f"timed out after {self.seconds:.0f} s" if self.timed_out else f"exited with code {self.returncode}"
            rows.append(Result(self.name, f"script {self.path.name} {why}", float(self.returncode or -1), None,
                               "exit code", "exits 0", False, round(self.peak_rss_mib, 1)))
        elif not self.results:
            rows.append(Result(self.name, f"script {self.path.name} emitted no results", 0.0, None, "results",
                               ">= 1 result", False, round(self.peak_rss_mib, 1)))
        return rows


def discover(only: list[str]) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if not only:
        return scripts
    wanted = {w.strip().removesuffix(".py").removeprefix("bench_") for item in only for w in item.split(",") if w.strip()}
    chosen = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    unknown = wanted - {s.stem.removeprefix("bench_") for s in chosen}
    if unknown:
        names = ", ".join(s.stem.removeprefix("bench_") for s in scripts)
        raise SystemExit(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: {names}")
    return chosen


def run_script(path: Path, timeout: float) -> ScriptRun:
    run = ScriptRun(path.stem.removeprefix("bench_"), path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"\n=== {shown} ===", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(path)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1, errors="replace",
    )
    assert process.stdout is not None
    deadline = started + timeout

    def kill_at_deadline() -> None:
        while process.poll() is None:
            if time.monotonic() > deadline:
                run.timed_out = True
                process.kill()
                return
            time.sleep(0.5)

    watchdog = threading.Thread(target=kill_at_deadline, daemon=True)
    watchdog.start()
    for line in process.stdout:
        line = line.rstrip("\n")
        result = None
        if line.startswith(PREFIX):
            try:
                result = parse(line)
            except (ValueError, TypeError) as exc:
                print(f"  [run.py] unreadable result line ({exc}): {line[:200]}", flush=True)
        if result is not None:
            run.results.append(result)
            continue  # collected for the table; the script prints its own readable lines
        print(line, flush=True)
        run.tail = (run.tail + [line])[-20:]
    # Reap the child ourselves to get its own resource usage (its peak RSS), then tell Popen.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    run.returncode = process.returncode
    run.seconds = time.monotonic() - started
    run.peak_rss_mib = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    watchdog.join(timeout=1)
    verdict = "timed out" if run.timed_out else f"exit {run.returncode}"
    print(f"=== {path.name}: {verdict}, {run.seconds:.0f} s, {len(run.results)} result(s), "
          f"peak RSS {run.peak_rss_mib:.0f} MiB ===", flush=True)
    return run


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.3g}"
    return f"{value:.4g}"


def row_cells(r: Result) -> list[str]:
    ratio = r.ratio
    return [
        r.benchmark,
        r.case,
        f"{number(r.ours)} {r.unit}",
        "-" if r.baseline is None else f"{number(r.baseline)} {r.unit}",
        "-" if ratio is None else f"{ratio:.3g}x",
        r.target,
        "pass" if r.passed else "FAIL",
        f"{r.peak_rss_mib:.0f}",
    ]


HEADERS = ["benchmark", "case", "ours", "baseline", "ratio", "target", "result", "peak RSS MiB"]


def text_table(rows: list[Result]) -> str:
    cells = [HEADERS] + [row_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    widths[1] = min(widths[1], 90)
    lines = []
    for i, c in enumerate(cells):
        case = c[1] if len(c[1]) <= widths[1] else c[1][: widths[1] - 1] + "~"
        c = [c[0], case, *c[2:]]
        lines.append("  ".join(v.ljust(widths[j]) if j < 2 or j == 5 else v.rjust(widths[j]) for j, v in enumerate(c)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Result]) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(["---", "---", "--:", "--:", "--:", "---", "---", "--:"]) + "|"]
    for r in rows:
        cells = row_cells(r)
        cells[6] = "pass" if r.passed else "**FAIL**"
        lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    cpus = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cpus
    info["CPUs"] = f"{cpus}" + (f" ({usable} usable by this process)" if usable != cpus else "")
    try:
        models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.lower().startswith("model name")]
        info["CPU model"] = models[0] if models else platform.processor() or "unknown"
    except OSError:
        info["CPU model"] = platform.processor() or "unknown"
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        info["RAM"] = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        info["RAM"] = "unknown"
    info["Python"] = f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    pretty = ""
    try:
        pretty = next((line.split("=", 1)[1].strip().strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                       if line.startswith("PRETTY_NAME=")), "")
    except OSError:
        pass
    info["OS"] = f"{platform.platform()}" + (f" ({pretty})" if pretty else "")
    return info


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class Earlier:
    """What a report written before holds for the scripts this run did not run (``--only``)."""

    written: str  # the earlier report's own "Written by ..." line
    scripts: list[str]  # its script-table lines of those scripts
    results: list[str]  # its result-table lines of those benchmarks


def earlier_rows(path: Path, rerun: set[str]) -> Earlier:
    """The lines of ``path`` (a report this script wrote) for benchmarks not in ``rerun``, so that a
    partial run updates the rows it re-measured and keeps the others, saying when they were measured."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Earlier("", [], [])
    written = next((line for line in text.splitlines() if line.startswith("Written by")), "")
    scripts, results, section = [], [], ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("| ") else []
        if not cells or cells[0] in ("script", "benchmark"):
            continue
        if section == "Scripts" and cells[0].removeprefix("bench_").removesuffix(".py") not in rerun:
            scripts.append(line)
        elif section == "Results" and cells[0] not in rerun:
            results.append(line)
    return Earlier(written, scripts, results)


def write_markdown(path: Path, runs: list[ScriptRun], rows: list[Result], started: datetime, seconds: float,
                   only: list[str], loads: tuple[str, str]) -> None:
    failed = [r for r in rows if not r.passed]
    kept = earlier_rows(path, {r.name for r in runs}) if only else Earlier("", [], [])
    note = []
    if kept.results:
        note = ["", f"Rows of the benchmarks not re-run ({len(kept.results)} cases) are kept as an earlier report "
                f"measured them; that report said: {kept.written}"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run.py` ({'`make bench`' if not only else '`run.py --only ' + ','.join(only) + '`: a subset'}) "
        f"on {started.isoformat(timespec='seconds')}; {seconds:.0f} s in all. "
        f"{len(rows)} cases, {len(rows) - len(failed)} pass, {len(failed)} fail.",
        *note,
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine().items()],
        f"- Load average (1/5/15 min) at start: {loads[0]}; at end: {loads[1]} (other work on the machine "
        "inflates the timings; the request counts do not depend on it)",
        "",
        "## Scripts",
        "",
        "| script | exit | seconds | results | peak RSS MiB |",
        "|---|--:|--:|--:|--:|",
        *[f"| {r.path.name} | {'timeout' if r.timed_out else r.returncode} | {r.seconds:.0f} | {len(r.results)} | "
          f"{r.peak_rss_mib:.0f} |" for r in runs],
        *kept.scripts,
        "",
        "## Results",
        "",
        "`ours` is this code's number, `baseline` the reference measured in the same run (none when the target is "
        "an absolute bound), `ratio` = ours / baseline. Targets marked `info` are reported, never failed. "
        "Peak RSS is the script process's resident high-water mark (or the case's, where a script measures it).",
        "",
        markdown_table(rows),
        *kept.results,
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only bench_NAME.py (repeatable, or a comma list)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per script before it is killed")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="the markdown report to write")
    args = parser.parse_args()
    scripts = discover(args.only)
    started_at = datetime.now().astimezone()
    load_at_start = load_average()
    started = time.monotonic()
    runs = [run_script(path, args.timeout) for path in scripts]
    seconds = time.monotonic() - started
    rows = [row for run in runs for row in run.rows()]
    print("\n" + text_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows)} cases from {len(runs)} script(s) in {seconds:.0f} s: {len(rows) - len(failed)} pass, "
          f"{len(failed)} FAIL")
    write_markdown(args.output, runs, rows, started_at, seconds, args.only, (load_at_start, load_average()))
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
