"""A real Prometheus (Debian's binary) scraping test workers on 127.0.0.1, started and stopped
by PID, for the tests that query it over its HTTP API."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from usersignals.broker import free_port, wait_for_port
from usersignals.processes import terminate

__all__ = ["running_prometheus", "wait_ready"]


def wait_ready(port: int, timeout: float = 60) -> None:
    """Until Prometheus answers ``/-/ready`` with 200 (its API answers 503 before)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"prometheus on {port} not ready after {timeout} s")


@contextmanager
def running_prometheus(
    binary: str, tmp_path: Path, targets: list[int], rules: Path | None = None
) -> Iterator[int]:
    """Prometheus scraping the worker ports ``targets`` every second (evaluating ``rules``
    every second too); yields its port once it is ready."""
    config = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'127.0.0.1:{p}'" for p in targets)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:\n  - {rules}\n" if rules is not None else "")
        + "scrape_configs:\n  - job_name: usersignals\n"
        f"    static_configs:\n      - targets: [{listed}]\n",
        encoding="utf-8",
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        if not wait_for_port("127.0.0.1", port, 30):
            raise TimeoutError(f"prometheus did not listen on {port}")
        wait_ready(port)
        yield port
    finally:
        terminate(proc, 30)
