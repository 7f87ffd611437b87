"""The fault suite's machinery: real processes, bounded waits, a size-limited disk, the table.

Every process the suite starts runs in a session of its own and carries a marker in its
environment, so that the suite can kill it (by PID, with its process group) whatever happened,
and prove at the end that none is left. Every wait is bounded and says what it waited for.
Scenarios are rows of a :class:`FaultTable`: a failed check ends its scenario, not the run, so
one run shows every scenario's result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.streams.workerproc import WorkerProc
from usersignals.broker import free_port, wait_for_port

START_TIMEOUT_S = 60.0
MARKER_VAR = "USERSIGNALS_FAULTS_MARKER"
"""Environment variable that marks every process the suite starts (and their children)."""


class CheckFailed(AssertionError):
    """A scenario's check did not hold; its message is the row's result."""


def check(condition: object, what: str) -> None:
    """Ends the current scenario with ``what`` when ``condition`` is false."""
    if not condition:
        raise CheckFailed(what)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> Any:
    """Polls ``predicate`` until it returns a true value (returned); fails saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


# -- the table ------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    done: str
    checked: str
    result: str = "not run"
    evidence: str = ""


@dataclass
class FaultTable:
    """Scenario, what was done, what was checked, result; plus evidence for failed rows."""

    seed: int
    rows: list[Row] = field(default_factory=list)
    logs: Callable[[], list[Path]] = list
    """The log files whose lines written during a failed scenario are its evidence."""

    @contextlib.contextmanager
    def scenario(self, name: str, done: str, checked: str) -> Iterator[Row]:
        row = Row(name, done, checked)
        self.rows.append(row)
        progress(f"scenario {name}: start")
        marks = log_marks(self.logs())
        started = time.monotonic()
        try:
            yield row
        except Exception as exc:  # a failed scenario is a row, the run goes on
            kind = "" if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: "
            row.result = f"FAIL: {kind}{exc}"[:600]
            if not isinstance(exc, CheckFailed):
                row.evidence = traceback.format_exc(limit=4)[-1500:]
            row.evidence += "\n" + excerpt(self.logs(), EVIDENCE, since=marks)
        else:
            if row.result == "not run":
                row.result = "ok"
        row.result += f" ({time.monotonic() - started:.0f}s)"
        progress(f"scenario {name}: {row.result}")

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.result.startswith("FAIL")]

    def render(self) -> str:
        heads = ("scenario", "what was done", "what was checked", "result")
        cells = [heads, *((r.scenario, r.done, r.checked, r.result) for r in self.rows)]
        widths = [min(44, max(len(c[i]) for c in cells)) for i in range(3)]
        lines = [f"fault suite, seed {self.seed}"]
        for c in cells:
            wrapped = [_wrap(c[i], widths[i]) for i in range(3)] + [_wrap(c[3], 70)]
            for k in range(max(len(w) for w in wrapped)):
                parts = [w[k] if k < len(w) else "" for w in wrapped]
                lines.append(
                    " | ".join(p.ljust(widths[i]) for i, p in enumerate(parts[:3]))
                    + " | "
                    + parts[3]
                )
            lines.append("-" * (sum(widths) + 80))
        for r in self.failed:
            lines.append(f"evidence for {r.scenario}:\n{r.evidence.strip()}\n")
        return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines or [""]


_T0 = time.monotonic()


def progress(text: str) -> None:
    """One line of progress, with the seconds since the suite started (visible with ``-s``)."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {text}", flush=True)


# -- processes ------------------------------------------------------------------------------


def start_worker(
    env: dict[str, str], log_dir: Path, name: str, *, loader: bool = True
) -> WorkerProc:
    """``usersignals worker`` in a session of its own, on a free port, once it listens."""
    port = free_port()
    log = log_dir / f"{name}-{port}.log"
    args = [sys.executable, "-m", "usersignals", "worker", "--port", str(port), "-l", "info"]
    if not loader:
        args.append("--no-loader")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    if not wait_for_port("127.0.0.1", port, START_TIMEOUT_S):
        kill_group(proc.pid)
        proc.wait(10)
        raise CheckFailed(f"worker {name} did not listen on {port}: {log.read_text()[-2000:]}")
    return WorkerProc(proc, port, log)


def kill_group(pid: int) -> None:
    """SIGKILL to the process group led by ``pid`` (a session leader the suite started)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def loader_of(worker: WorkerProc) -> int | None:
    """PID of the worker's loader child, if one runs now."""
    for pid in children(worker.proc.pid):
        if " loader" in cmdline(pid) and alive(pid):
            return pid
    return None


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (``VmRSS``), 0 when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 if found else 0


def marked_processes(marker: str) -> list[int]:
    """Live PIDs whose environment carries ``marker`` (the suite's processes and children)."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry)):
            found.append(int(entry))
    return found


def kill_marked(marker: str) -> list[int]:
    """SIGKILLs every process carrying ``marker``; returns the PIDs it found."""
    pids = marked_processes(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


# -- a disk that fills up -------------------------------------------------------------------


@dataclass
class SmallDisk:
    """A size-limited filesystem for the warehouse, and a file that fills it on demand."""

    root: Path
    mounted: bool
    why_not: str = ""

    @property
    def filler(self) -> Path:
        return self.root / "filler"

    def fill(self) -> int:
        """Writes until ``ENOSPC``; returns the bytes written."""
        written = 0
        chunk = b"\0" * (1 << 20)
        with self.filler.open("wb", buffering=0) as f:
            while True:
                try:
                    written += f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            with contextlib.suppress(OSError):  # the last partial megabyte, to the last byte
                while f.write(b"\0" * 4096):
                    written += 4096
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def small_disk(root: Path, size_mb: int) -> Iterator[SmallDisk]:
    """A tmpfs of ``size_mb`` MiB mounted on ``root`` (root only); unmounted in any case.

    Where it cannot be mounted, ``root`` is a plain directory and ``mounted`` is false (the
    disk-full scenario then says it was skipped, and why).
    """
    root.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    disk = SmallDisk(root, out.returncode == 0, out.stderr.strip())
    try:
        yield disk
    finally:
        if disk.mounted:
            done = subprocess.run(["umount", str(root)], capture_output=True, check=False)
            if done.returncode != 0:  # still busy: detach now, it goes when the last user does
                subprocess.run(["umount", "-l", str(root)], capture_output=True, check=False)


def mounted(root: Path) -> bool:
    """Whether something is mounted on ``root`` now."""
    target = str(root.resolve())
    with open("/proc/mounts") as f:
        return any(line.split()[1] == target for line in f)


# -- logs -----------------------------------------------------------------------------------


EVIDENCE = r"error|exception|crash|incarnation|epoch|no space|enospc|restart|not running|killed"
"""Log lines worth showing as a failed scenario's evidence."""


def log_marks(paths: list[Path]) -> dict[Path, int]:
    """The size of each log now, so that what is written later can be read alone."""
    return {p: p.stat().st_size for p in paths if p.exists()}


def text_since(path: Path, marks: dict[Path, int]) -> str:
    """What ``path`` got after ``marks`` was taken (a new file whole)."""
    with path.open("rb") as f:
        f.seek(marks.get(path, 0))
        return f.read().decode(errors="replace")


def excerpt(
    paths: list[Path],
    pattern: str,
    *,
    since: dict[Path, int] | None = None,
    limit: int = 12,
    width: int = 240,
) -> str:
    """The first and last lines matching ``pattern`` in ``paths`` (only what was written after
    ``since``, when given), ``limit`` in all, each cut to ``width``; repeats left out."""
    rx = re.compile(pattern, re.I)
    hits: list[str] = []
    seen: set[str] = set()
    for path in paths:
        with contextlib.suppress(OSError):
            for line in text_since(path, since or {}).splitlines():
                key = re.sub(r"^\[[^]]*\] \[\d+\] ", "", line.strip())[:120]
                if not rx.search(line) or key in seen:
                    continue
                seen.add(key)
                hits.append(f"{path.name}: {line.strip()[:width]}")
    if len(hits) > limit:
        hits = [*hits[: limit // 2], "...", *hits[-(limit - limit // 2) :]]
    return "\n".join(hits)


def report_diff(got: dict[str, Any], want: dict[str, Any]) -> str:
    """Which sections of two report JSONs differ, with the first differing row of each."""
    out = []
    for key in sorted(set(got) | set(want)):
        a, b = got.get(key), want.get(key)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list):
            first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), None)
            if first is None:
                out.append(f"{key}: {len(a)} rows, expected {len(b)}")
            else:
                out.append(f"{key}[{first}]: {a[first]!r} != {b[first]!r}"[:400])
        else:
            out.append(f"{key}: {a!r} != {b!r}"[:400])
    return "; ".join(out)


def cli_json(env: dict[str, str], *args: str, timeout: float = 120.0) -> Any:
    """Runs ``usersignals ARGS`` and parses its standard output as JSON."""
    out = subprocess.run(
        [sys.executable, "-m", "usersignals", *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise CheckFailed(
            f"usersignals {' '.join(args)} exited {out.returncode}: {out.stderr[-800:]!r}"
        )
    return json.loads(out.stdout)
