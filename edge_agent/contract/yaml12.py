"""YAML files the way operators write them: YAML 1.2 booleans and numbers.

Every config file of the project (scenarios, agent configs, registries) is read with
`read_yaml_file` (or `load_yaml`), and its validation errors become one line per problem
with `validation_problems`: the path inside the file (``devices[2].tags[0].order``),
then what is wrong and how to fix it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

# libyaml's parser when PyYAML was built with it: a 10,000-tag config parses in a fifth
# of the time and with about half the peak memory, which a 1 GB gateway keeps as RSS.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Yaml12Loader(_Base):  # type: ignore[valid-type,misc]
    """SafeLoader with YAML 1.2 core-schema booleans and numbers.

    PyYAML follows YAML 1.1, where OFF is False and 16:00 is the base-60 number 960:
    a state named OFF and an unquoted shift time must stay strings.
    """


_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal without leading zeros (PyYAML would read 017 as octal) and hex; no base 60.
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML with 1.2 booleans (shared by every config file of the project)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class InvalidFileError(Exception):
    """A file that cannot be used; `problems` lists each as 'path: message'.

    Each kind of file subclasses it and names itself in `kind`."""

    kind = "file"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid {self.kind} ({len(problems)} problem(s)):\n{lines}")


class YamlFileError(Exception):
    """A file that cannot be read or is not YAML; `problem` is one line for the user."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where, what, and where the enclosing construct began."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    cmark = getattr(exc, "context_mark", None)
    started = ""
    if context and cmark is not None:
        started = f" ({context} that began at line {cmark.line + 1}, column {cmark.column + 1})"
    return f"{where}not valid YAML: {problem}{started}"


def read_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlFileError(f"cannot read the file: {exc.strerror}") from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise YamlFileError(yaml_problem(exc)) from None


def validation_problems(
    exc: ValidationError,
    *,
    docs: str,
    skip_steps: frozenset[str] = frozenset(),
    explain: Callable[[ErrorDetails, tuple[int | str, ...]], str | None] | None = None,
) -> list[str]:
    """pydantic's errors as 'path: message' lines.

    skip_steps: path steps pydantic adds that users do not write (union member names);
    explain: a file-specific message for an error, or None for the default.
    """
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if p not in skip_steps)
        msg = (explain(err, loc) if explain else None) or err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown field; check its spelling against {docs}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        where = format_location(loc)
        # cross-section checks name their own path, so the top level adds nothing
        prefix = "" if where == "(top level)" else f"{where}: "
        problems.extend(f"{prefix}{line}" for line in msg.splitlines())
    return problems
