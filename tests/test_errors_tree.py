"""One module holds the whole exception tree: ``usersignals.errors``, drawn in its docstring.

Every subclass of ``UsersignalsError`` that any module of the package defines or exposes is
the one of ``usersignals.errors``; the drawn tree is the class tree, and each class says in its
own body whether trying again can help (``retryable``), as the tree marks it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import textwrap

import pytest

import usersignals
from usersignals import errors
from usersignals.errors import UsersignalsError

MARKS = {"retryable": True, "terminal": False, "per cause": False, "base": False}
NODE = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\w+)\s+(?P<mark>per cause|\w+)\s+\S")


def _every_module() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(usersignals.__path__, "usersignals.")
        if not m.name.endswith(".__main__")
    ]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def _tree() -> dict[str, tuple[str | None, str]]:
    """name -> (parent name, mark), read from the drawing in the module docstring."""
    assert errors.__doc__ is not None
    drawing = textwrap.dedent(errors.__doc__.split("Tree::", 1)[1].strip("\n").split("\n\n")[0])
    first, *lines = drawing.splitlines()
    assert first.split()[0] == "UsersignalsError"
    tree: dict[str, tuple[str | None, str]] = {"UsersignalsError": (None, "base")}
    parents = ["UsersignalsError"]
    for line in lines:
        node = NODE.match(line)
        if node is None:  # a stage heading: "│   ingest: ..."
            assert line.lstrip(" │").split(":")[0], line
            continue
        depth = len(node.group("indent")) // 4
        del parents[depth + 1 :]
        assert node.group("name") not in tree, f"{node.group('name')} drawn twice"
        tree[node.group("name")] = (parents[depth], node.group("mark"))
        parents.append(node.group("name"))
    return tree


TREE = _tree()
DEFINED = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, UsersignalsError)
}


def test_every_project_exception_is_defined_in_the_errors_module() -> None:
    _every_module()
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _subclasses(UsersignalsError)
        if cls.__module__ == "usersignals" or cls.__module__.startswith("usersignals.")
        if cls.__module__ != "usersignals.errors"
    )
    assert elsewhere == []


PRIVATE = ["usersignals.ingest.rules.Rejected", "usersignals.ingest.timestamps.TimestampError"]
"""Control flow inside the contract, caught where it is raised; the module docstring says so."""


def test_no_other_exception_class_is_defined_anywhere() -> None:
    found = sorted(
        f"{name}.{cls.__qualname__}"
        for name in _every_module()
        for cls in vars(importlib.import_module(name)).values()
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls.__module__ == name
        if name != "usersignals.errors"
    )
    assert found == PRIVATE
    assert errors.__doc__ is not None
    for private in PRIVATE:
        module, _, cls = private.rpartition(".")
        assert f"``{cls}``" in errors.__doc__
        assert f"``{module}``" in errors.__doc__


def test_the_drawn_tree_is_the_class_tree() -> None:
    assert sorted(TREE) == sorted(DEFINED)
    assert sorted(errors.__all__) == sorted(DEFINED)
    for name, (parent, _mark) in TREE.items():
        cls = DEFINED[name]
        assert cls.__module__ == "usersignals.errors"
        if parent is None:
            assert cls.__bases__ == (Exception,)
        else:
            assert cls.__bases__ == (DEFINED[parent],), name


@pytest.mark.parametrize("name", sorted(TREE))
def test_each_class_says_if_it_is_retryable_as_the_tree_marks_it(name: str) -> None:
    cls = DEFINED[name]
    mark = TREE[name][1]
    assert type(vars(cls).get("retryable")) is bool, f"{name} does not set retryable itself"
    assert cls.retryable is MARKS[mark]
    parameters = inspect.signature(cls.__init__).parameters
    per_cause = "retryable" in parameters
    assert per_cause is (mark == "per cause")
    if per_cause:
        assert parameters["retryable"].kind is inspect.Parameter.KEYWORD_ONLY
    children = [child for child, (parent, _) in TREE.items() if parent == name]
    assert bool(children) is (mark == "base")
    doc = vars(cls).get("__doc__")
    assert doc, f"{name} has no docstring of its own"
    summary = doc.splitlines()[0]
    assert summary.endswith(".")
    if mark != "base":
        assert summary.startswith("Raised when "), summary


@pytest.mark.parametrize(
    ("cls", "args", "retryable"),
    [
        (errors.BrokerError, ("broker down",), False),
        (errors.BrokerError, ("broker down", True), True),
        (errors.LoaderError, ("usersignals.events", "no topic"), False),
        (errors.LoaderError, ("usersignals.events", "no fetch answer", True), True),
    ],
)
def test_a_per_cause_error_takes_retryable_from_its_raise(
    cls: type[UsersignalsError], args: tuple[object, ...], retryable: bool
) -> None:
    *positional, last = args
    error = cls(*positional, retryable=last) if isinstance(last, bool) else cls(*args)
    assert error.retryable is retryable
    assert cls.retryable is False


# the names stay importable from the modules that raise them
REEXPORTS = [
    ("usersignals.config", "UsersignalsError"),
    ("usersignals.config", "ConfigError"),
    ("usersignals.broker", "BrokerError"),
    ("usersignals.ingest", "EventError"),
    ("usersignals.ingest.event", "EventError"),
    ("usersignals.ingest.contract", "EventError"),
    ("usersignals.ingest.spool", "SpoolFullError"),
    ("usersignals.ingest.spool", "SpoolBusyError"),
    ("usersignals.ingest.tracker", "TrackerClosedError"),
    ("usersignals.ingest.collector", "CollectorError"),
    ("usersignals.streams.web", "BadDayRangeError"),
    ("usersignals.streams.livereport", "PartialMismatchError"),
    ("usersignals.metrics.periods", "DayRangeError"),
    ("usersignals.warehouse.loader", "LoaderError"),
    ("usersignals.warehouse.loader", "LoaderBusyError"),
    ("usersignals.warehouse.compact", "DayNotFoundError"),
    ("usersignals.warehouse.arena", "ArenaInputError"),
    ("usersignals.warehouse.export", "ExportError"),
    ("usersignals.warehouse.db", "WarehouseNotFoundError"),
    ("usersignals.warehouse.manifest", "ManifestError"),
    ("usersignals.dashboards.rules", "RulesError"),
    ("usersignals.dashboards.push", "PushError"),
    ("usersignals.dashboards.push", "PushRejectedError"),
    ("usersignals.dashboards.push", "PushUnavailableError"),
    ("usersignals.cli.live", "LiveReportError"),
    ("usersignals.cli.status", "StatusError"),
    ("usersignals.cli.deadletter", "ReplayUnconfirmedError"),
    ("usersignals.cli.run", "RunError"),
    ("usersignals.cli.run", "HistoryMismatchError"),
]


@pytest.mark.parametrize(("module", "name"), REEXPORTS)
def test_the_old_import_paths_give_the_same_class(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_every_class_keeps_an_old_import_path() -> None:
    assert {name for _, name in REEXPORTS} == set(DEFINED)
