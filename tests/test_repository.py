"""The repository stands on its own: a clone anywhere has what its tests and docs need.

Nothing refers to a folder beside the checkout, every link in the docs resolves inside it, the
default data paths are under the ignored ``data/`` (never a source folder), and the test
harness itself does what ``make test`` relies on: missing system tools fail there, the broker
marker means what it says, and the run ends on a clean checkout.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_TOOLS_VAR, require_tool, tools_required
from usersignals.broker import EmbeddedBroker
from usersignals.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


# ---------------------------------------------------------------- no folder beside the clone


def test_nothing_refers_to_a_folder_beside_the_checkout() -> None:
    shared = "shared"  # joined below, so that this file does not match itself
    needles = [f"../{shared}", f"{shared}/schemas", f"{shared}/design"]
    found = git("grep", "-n", "-I", *(a for n in needles for a in ("-e", n)))
    assert (found.returncode, found.stdout) == (1, "")


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_in_the_checkout(page: Path) -> None:
    targets = [
        t.split("#", 1)[0]
        for t in LINK.findall(page.read_text(encoding="utf-8"))
        if not re.match(r"[a-z]+:", t) and not t.startswith("#")
    ]
    broken = [t for t in targets if not (page.parent / t).resolve().exists()]
    assert broken == []
    assert all((page.parent / t).resolve().is_relative_to(ROOT) for t in targets)


def test_the_readme_links_the_docs_and_the_index_lists_every_page() -> None:
    readme = LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    for page in ("docs/README.md", "docs/architecture.md", "docs/events.md", "docs/metrics.md"):
        assert page in readme
    index = set(LINK.findall((DOCS / "README.md").read_text(encoding="utf-8")))
    assert {p.name for p in DOCS.glob("*.md")} - {"README.md"} <= index


# ---------------------------------------------------------------- data paths


def test_the_default_data_lives_under_data_not_in_a_source_folder() -> None:
    defaults = Settings.load(environ={})
    assert (defaults.warehouse, defaults.state_dir) == (Path("data/warehouse"), Path("data/state"))
    for path in (defaults.warehouse, defaults.state_dir):
        assert git("ls-files", "--", str(path.parts[0])).stdout == ""  # no source lives there
        assert git("check-ignore", "-q", str(path / "any-file")).returncode == 0


def test_no_tracked_file_is_ignored() -> None:
    assert git("ls-files", "--cached", "--ignored", "--exclude-standard").stdout == ""


def test_faust_keeps_its_data_under_the_state_dir(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from usersignals.config import Settings\n"
        "from usersignals.streams.app import LiveWorker\n"
        "worker = LiveWorker(Settings.load(environ={}, state_dir=sys.argv[1]), port=6066)\n"
        "print(worker.app.conf.datadir)\n"
    )  # in a child: a Faust app leaves an event loop behind in the process that made it
    state = tmp_path / "state"
    out = subprocess.run(
        [sys.executable, "-c", code, str(state)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == str(state / "faust")
    assert (state / "faust").is_dir()  # Faust itself creates only the last level
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]  # nothing in the cwd


# ---------------------------------------------------------------- the harness


@pytest.mark.parametrize(
    ("environ", "required"),
    [
        ({}, False),
        ({"CI": "true"}, True),
        ({"CI": "TRUE"}, True),
        ({"CI": "false"}, False),
        ({REQUIRE_TOOLS_VAR: "1"}, True),
        ({REQUIRE_TOOLS_VAR: "0"}, False),
    ],
)
def test_when_a_missing_tool_is_a_failure(environ: dict[str, str], required: bool) -> None:
    assert tools_required(environ) is required


@pytest.mark.parametrize(
    ("environ", "outcome"),
    [({}, pytest.skip.Exception), ({REQUIRE_TOOLS_VAR: "1"}, pytest.fail.Exception)],
)
def test_a_missing_tool_skips_or_fails(
    environ: dict[str, str], outcome: type[BaseException], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("CI", REQUIRE_TOOLS_VAR):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(outcome) as exc:
        require_tool("usersignals-no-such-tool")
    assert str(exc.value).startswith(
        "'usersignals-no-such-tool' is not installed (make system-deps installs it)"
    )


def test_no_test_skips_on_a_missing_tool_by_itself() -> None:
    """Tools are looked up through ``require_tool`` (or the fixtures built on it), so that
    ``make test`` and CI fail where a plain ``skipif`` would skip."""
    skips = re.compile(r"(skipif|pytest\.skip)\((?P<args>[^)]*(\([^)]*\)[^)]*)*)\)", re.S)
    tools = re.compile(r"prometheus|promtool|chromium", re.I)
    found = [
        f"{path.relative_to(ROOT)}: {m.group(0)[:60]!r}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if path.name not in ("conftest.py", "test_repository.py")
        for m in skips.finditer(path.read_text(encoding="utf-8"))
        if tools.search(m.group("args"))
    ]
    assert found == []


def test_a_tool_that_is_there_is_its_path() -> None:
    assert require_tool("git").endswith("/git")


def test_an_unmarked_test_cannot_start_the_broker() -> None:
    with pytest.raises(pytest.fail.Exception, match="is not marked broker"):
        EmbeddedBroker(partitions=1, topics=()).start()


def test_make_test_requires_the_tools_and_ends_on_a_clean_checkout() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert recipe[0].strip().startswith(f"{REQUIRE_TOOLS_VAR}=1 $(BIN)/python -m pytest")
    assert recipe[-1].strip().endswith("check-clean")
    assert "git status --porcelain" in makefile.split("\ncheck-clean:", 1)[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == "make test"
