"""The collector's OpenAPI document, and a real collector held to it by ``schemathesis``.

The collector is a child process (``python -m usersignals collector``) on the session broker;
``schemathesis run`` (its CLI, seeded, from the project's venv) generates requests from
``GET /openapi.json`` and checks every answer: no 5xx, and each status code, content type,
header and body documented. The same process then gets a burst of malformed requests, to see
that its log stays bounded and quotes nothing of them.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Kafka
from tests.ingest.test_collector import Running, request, start_collector
from usersignals.config import Settings
from usersignals.ingest.collector import Collector

KEY = "k-openapi-1"
EMAIL = "bob.fuzz@example.com"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


@pytest.fixture
def running(kafka: Kafka) -> Iterator[Running]:
    collector = start_collector({**kafka.env(), "USERSIGNALS_WRITE_KEYS": KEY})
    yield collector
    assert collector.stop() == 0


def test_the_document_names_every_route() -> None:
    document = Collector(Settings()).openapi
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    assert documented == {(r.method, r.path) for r in Collector(Settings()).routes}


def test_openapi_json_is_served(running: Running) -> None:
    answer = request(running.url, "GET", "/openapi.json")
    assert answer.status == 200
    assert answer.body == Collector(Settings()).openapi


def test_schemathesis_finds_no_5xx_and_no_undocumented_answer(
    running: Running, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{running.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {KEY}",
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "12",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed\n", done.stdout)
    assert counts is not None, done.stdout[-4000:]
    assert counts[1] == counts[2]


def test_a_flood_of_malformed_requests_logs_one_line(running: Running) -> None:
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nBad Header " + EMAIL.encode() + b"\r\n\r\n"
            )
            while conn.recv(65536):
                pass
    assert running.stop() == 0
    lines = running.stderr_until("collector stopped", 10)
    assert [line for line in lines if "malformed" in line] == [
        "WARNING usersignals.ingest.collector: answering 400 to a malformed request: BadHttpMessage"
    ]
    assert not [line for line in lines if EMAIL in line or "Traceback" in line]
