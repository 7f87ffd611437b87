"""``usersignals dashboards push``: the real command, in a subprocess, against a fake Grafana.

The fake is :class:`tests.dashboards.test_push.FakeGrafana` (it checks Grafana's API contract);
the command runs in a thread while it serves. The token is in the environment only, and no
output of any run may carry it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.dashboards.test_push import DB, HANG, JSON, TOKEN, FakeGrafana, against
from usersignals.broker import free_port
from usersignals.cli.dashboards import TOKEN_ENV, URL_ENV
from usersignals.dashboards.grafana import build_dashboards
from usersignals.dashboards.push import save_payload, with_datasources

UIDS = [b["uid"] for b in build_dashboards().values()]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERSIGNALS_")}
    return {**env, **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usersignals", "dashboards", "push", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _push(
    grafana: FakeGrafana, *args: str, token: str = TOKEN
) -> tuple[subprocess.CompletedProcess[str], str]:
    """One ``dashboards push --url <grafana> ARGS`` with the token in the environment."""

    def call(url: str) -> subprocess.CompletedProcess[str]:
        out = _run(["--url", url, *args], _env(**{TOKEN_ENV: token}))
        assert TOKEN not in out.stdout + out.stderr
        return out

    out, url = against(grafana, call)
    assert isinstance(out, subprocess.CompletedProcess)
    return out, url


def test_push_creates_then_a_second_push_saves_nothing() -> None:
    grafana = FakeGrafana()
    args = ["--folder-uid", "f-1", "--prometheus-uid", "prom-prod", "--duckdb-uid", "duck-prod"]
    out, url = _push(grafana, *args)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        "folder f-1: created",
        *(f"{uid}: created" for uid in UIDS),
        f"{len(UIDS)} created, 0 updated, 0 unchanged in {url}",
    ]
    wanted = [
        with_datasources(b, prometheus_uid="prom-prod", duckdb_uid="duck-prod")
        for b in build_dashboards().values()
    ]
    assert grafana.saved() == [save_payload(b, "f-1") for b in wanted]
    calls = len(grafana.seen)

    out, url = _push(grafana, *args)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        "folder f-1: exists",
        *(f"{uid}: unchanged" for uid in UIDS),
        f"0 created, 0 updated, {len(UIDS)} unchanged in {url}",
    ]
    assert all(method == "GET" for method, _ in grafana.calls()[calls:])
    assert grafana.problems == []


def test_dry_run_prints_what_would_change() -> None:
    grafana = FakeGrafana()
    first, *others = build_dashboards().values()
    grafana.store({**first, "title": "edited"})
    out, url = _push(grafana, "--dry-run")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        f"{first['uid']}: would be updated (title)",
        *(f"{b['uid']}: would be created" for b in others),
        f"{len(others)} would be created, 1 would be updated, 0 unchanged in {url} "
        "(dry run: nothing was saved)",
    ]
    assert all(method == "GET" for method, _ in grafana.calls())
    assert grafana.boards[first["uid"]]["dashboard"]["title"] == "edited"


def test_the_url_comes_from_the_environment_too() -> None:
    grafana = FakeGrafana(prefix="/grafana")

    def call(url: str) -> subprocess.CompletedProcess[str]:
        return _run(["--folder-uid", "f-1"], _env(**{TOKEN_ENV: TOKEN, URL_ENV: url + "/"}))

    out, url = against(grafana, call)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"{len(UIDS)} created, 0 updated, 0 unchanged in {url}/"
    assert grafana.problems == []


PREFIX = "error: Grafana at '{url}{path}' did not save the dashboard: "


@pytest.mark.parametrize(
    ("grafana", "path", "reason"),
    [
        (FakeGrafana(token="another"), "/api/folders/f-1",
         """HTTP 401 '{"message":"invalid API key"}'"""),
        (FakeGrafana(faults={DB: (412, b'{"message":"The dashboard has been changed by someone '
                                       b'else","status":"version-mismatch"}', JSON)}),
         "/api/dashboards/db", """HTTP 412 '{"message":"The dashboard has been changed by """
         """someone else","status":"version-mismatch"}'"""),
        (FakeGrafana(faults={("GET", "/api/folders/f-1"): (503, b"unavailable", {})}),
         "/api/folders/f-1", "HTTP 503 'unavailable'"),
        (FakeGrafana(faults={DB: (500, b'{"message":"Internal Server Error"}', JSON)}),
         "/api/dashboards/db", """HTTP 500 '{"message":"Internal Server Error"}'"""),
        (FakeGrafana(faults={DB: HANG}), "/api/dashboards/db", "no answer (timed out)"),
    ],
    ids=["401", "412", "503", "500", "timeout"],
)  # fmt: skip
def test_refusals_and_failures_exit_2_with_one_line(
    grafana: FakeGrafana, path: str, reason: str
) -> None:
    out, url = _push(grafana, "--folder-uid", "f-1", "--timeout", "0.5")
    assert out.returncode == 2
    assert out.stderr == PREFIX.format(url=url, path=path) + reason + "\n"
    assert out.stdout == ""


def test_nothing_listening_exits_2() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = _run(["--url", url], _env(**{TOKEN_ENV: TOKEN}))
    assert out.returncode == 2
    assert out.stderr == (
        f"error: Grafana at '{url}/api/dashboards/uid/{UIDS[0]}' did not save the dashboard: "
        "no answer (Connection refused)\n"
    )


_UID = "(expected 1 to 40 letters, digits, '-' or '_')"


@pytest.mark.parametrize(
    ("args", "env", "stderr"),
    [
        (["--url", "http://g"], {}, f"Error: {TOKEN_ENV} is not set (a Grafana service-account "
         "token)"),
        ([], {TOKEN_ENV: TOKEN}, "Error: Missing option '--url'."),
        (["--url", "grafana:3000"], {TOKEN_ENV: TOKEN}, "error: Invalid Grafana URL: "
         "'grafana:3000' (expected http(s)://host[:port][/path])"),
        (["--url", "http://g"], {TOKEN_ENV: TOKEN + " x"}, "error: Invalid Grafana token: "
         f"'<{len(TOKEN) + 2} characters>' (expected a non-empty ASCII token without spaces)"),
        (["--url", "http://g", "--folder-uid", "a/b"], {TOKEN_ENV: TOKEN},
         f"error: Invalid folder uid: 'a/b' {_UID}"),
        (["--url", "http://g", "--duckdb-uid", ""], {TOKEN_ENV: TOKEN},
         f"error: Invalid DuckDB uid: '' {_UID}"),
        (["--url", "http://g", "--timeout", "0"], {TOKEN_ENV: TOKEN},
         "Error: Invalid value for '--timeout': 0.0 is not in the range x>0."),
        (["--url", "http://g", "--token", TOKEN], {TOKEN_ENV: TOKEN},
         "Error: No such option: --token"),
    ],
    ids=["no-token", "no-url", "bad-url", "bad-token", "bad-folder", "bad-duckdb", "timeout-0",
         "no-token-flag"],
)  # fmt: skip
def test_bad_usage_exits_2_before_any_request(
    args: list[str], env: dict[str, str], stderr: str
) -> None:
    out = _run(args, _env(**env))
    assert (out.returncode, out.stdout, out.stderr) == (2, "", stderr + "\n")
    assert TOKEN not in out.stderr
