"""The image builds from this checkout and runs as a user that can write its data.

No Docker engine runs here, so the check is static: the build context is the checkout filtered
by ``.dockerignore`` under Docker's own matching rules (below), every ``COPY`` source must
survive that filter with all of its tracked files, and the ``USER`` the image ends with must
not be root and must own the warehouse and state directories the image's ``ENV`` names.

Docker's rules (moby's patternmatcher, which ``docker build`` and BuildKit use), implemented
here rather than with ``pathspec``, whose gitwildmatch differs: a bare ``name`` matches only
at the top of the context (gitignore: at any depth); ``*`` and ``?`` never match ``/``;
``**`` matches any number of directories, none included; a path is excluded when it or one of
its parent directories matches; ``!pattern`` re-includes, and the last matching line wins
(gitignore cannot re-include a file below an excluded directory, Docker can).
"""

from __future__ import annotations

import posixpath
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- .dockerignore


@dataclass(frozen=True)
class Pattern:
    """One cleaned ``.dockerignore`` line."""

    text: str
    exclusion: bool

    def matches(self, path: str) -> bool:
        text = self.text
        if text.startswith("**") and "*" not in text[2:] and not _WILD.search(text[2:]):
            suffix = text[2:]  # "**/name": a path ending in /name, or name itself
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        if text.endswith("**") and not _WILD.search(text[:-2]):
            return path.startswith(text[:-2])
        return re.fullmatch(_regex(text), path) is not None


_WILD = re.compile(r"[*?\[\]\\]")


def _regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*" and pattern[i : i + 1] == "*":
            i += 1
            if pattern[i : i + 1] == "/":
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
        elif ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "\\" and i < len(pattern):
            out += re.escape(pattern[i])
            i += 1
        elif ch in ".+()|{}$":  # regex syntax with no meaning in a pattern
            out += "\\" + ch
        else:  # literal, or part of a [class] (Go's and Python's agree)
            out += ch
    return out


def read_dockerignore(text: str) -> list[Pattern]:
    """The patterns of a ``.dockerignore`` file, as Docker reads them."""
    patterns = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        line = posixpath.normpath(line)
        if len(line) > 1 and line.startswith("/"):
            line = line.lstrip("/")
        patterns.append(Pattern(line, exclusion))
    return patterns


def excluded(patterns: list[Pattern], path: str) -> bool:
    """Whether ``path`` (relative, ``/``-separated) is left out of the build context."""
    path = posixpath.normpath(path)
    parents = path.split("/")[:-1]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue  # only an exclusion can change a match, only an inclusion a non-match
        hit = pattern.matches(path) or any(
            pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
        )
        if hit:
            matched = not pattern.exclusion
    return matched


@pytest.mark.parametrize(
    ("lines", "path", "out"),
    [
        # Docker's documented examples
        (["*/temp*"], "somedir/temporary.txt", True),
        (["*/temp*"], "somedir/temp", True),
        (["*/temp*"], "temp", False),
        (["*/temp*"], "a/b/temp", False),
        (["*/*/temp*"], "somedir/subdir/temporary.txt", True),
        (["temp?"], "tempa", True),
        (["temp?"], "temp", False),
        (["temp?"], "dir/tempa", False),
        (["**/*.go"], "main.go", True),
        (["**/*.go"], "cmd/tool/main.go", True),
        (["*.md", "!README*.md", "README-secret.md"], "CHANGES.md", True),
        (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
        (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
        # a bare name is anchored at the top of the context, unlike .gitignore
        (["warehouse"], "warehouse", True),
        (["warehouse"], "warehouse/db.py", True),
        (["warehouse"], "demo/warehouse/events", False),
        (["/data"], "data/state/x", True),
        (["./data/"], "data", True),
        (["# data", "data"], "data", True),
        (["# data"], "data", False),
        (["**/__pycache__"], "__pycache__/x.pyc", True),
        (["**/__pycache__"], "ingest/__pycache__/x.pyc", True),
        (["**/__pycache__"], "ingest/pycache.py", False),
        (["docs/**"], "docs/a/b.md", True),
        (["docs/**"], "docsx", False),
        # an exception re-includes a file below an excluded directory (gitignore cannot)
        (["data", "!data/keep.txt"], "data/keep.txt", False),
        (["data", "!data/keep.txt"], "data/other.txt", True),
        (["a[0-9]"], "a7", True),
        (["a[0-9]"], "ab", False),
        (["a\\*"], "a*", True),
        (["a\\*"], "ab", False),
    ],
)
def test_dockerignore_follows_dockers_rules(lines: list[str], path: str, out: bool) -> None:
    assert excluded(read_dockerignore("\n".join(lines)), path) is out


IGNORE = read_dockerignore((ROOT / ".dockerignore").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "data/warehouse/events/day=2026-09-01/p0-0-9.parquet",
        "data/state/spool/usersignals.events.spool",
        "demo/events.jsonl",
        "ingest/__pycache__/contract.cpython-311.pyc",
        "cli/__pycache__/run.cpython-311.pyc",
        "usersignals.egg-info/PKG-INFO",
    ],
)
def test_local_data_and_tooling_stay_out_of_the_context(path: str) -> None:
    assert excluded(IGNORE, path)


# ---------------------------------------------------------------- Dockerfile


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


DOCKERFILE = instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def copy_sources() -> list[str]:
    sources = []
    for keyword, args in DOCKERFILE:
        if keyword not in ("COPY", "ADD"):
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert "--from" not in args, "a multi-stage COPY: teach this test about stages"
        sources.extend(words[:-1])
    return sources


def tracked(path: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--", path], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_the_dockerfile_copies_the_package_and_its_stages() -> None:
    assert copy_sources() == [
        "pyproject.toml",
        "README.md",
        "usersignals",
        "ingest",
        "metrics",
        "streams",
        "warehouse",
        "dashboards",
        "cli",
    ]
    # every folder the package links in (usersignals/ingest -> ../ingest, ...) is copied too
    links = {p.name for p in (ROOT / "usersignals").iterdir() if p.is_symlink()}
    assert links <= set(copy_sources())


@pytest.mark.parametrize("source", copy_sources())
def test_every_copy_source_is_in_the_build_context(source: str) -> None:
    assert (ROOT / source).exists(), source
    assert not excluded(IGNORE, source), f"{source!r} is excluded by .dockerignore"
    files = tracked(source)
    assert files, f"{source!r} has no tracked file"
    assert [f for f in files if excluded(IGNORE, f)] == []


def _last(keyword: str) -> str:
    return [args for k, args in DOCKERFILE if k == keyword][-1]


def test_it_runs_as_an_unprivileged_user_that_owns_its_data() -> None:
    user = _last("USER").split(":")[0]
    assert user not in ("root", "0")
    env = dict(word.split("=", 1) for word in shlex.split(_last("ENV")))
    data = [env["USERSIGNALS_WAREHOUSE"], env["USERSIGNALS_STATE_DIR"]]
    run = [
        shlex.split(command) for k, args in DOCKERFILE if k == "RUN" for command in args.split("&&")
    ]
    created = {p for c in run if c[:2] == ["mkdir", "-p"] for p in c[2:]}
    assert set(data) <= created
    owned = [c[-1] for c in run if c[:2] == ["chown", "-R"] and c[2].split(":")[0] == user]
    assert all(any(d == o or d.startswith(o.rstrip("/") + "/") for o in owned) for d in data)
    assert any(c[0] == "useradd" and c[-1] == user for c in run)
    # the working directory is one the user can write (nothing lands in root-owned /app)
    assert _last("WORKDIR") in [*owned, *data]
    assert DOCKERFILE[-1] == ("ENTRYPOINT", '["usersignals"]')
