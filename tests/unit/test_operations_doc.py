"""docs/OPERATIONS.md names only what exists: every VERITAS_* variable is one config.py
or a `veritas` command reads, every `veritas <command> [--option]` parses with the real
parser (veritas_grpc.cli.build_parser), every metric is defined in adapters/metrics.py,
every alert in deploy/prometheus/alerts.yml, every Service.Method in the veritas.v1
descriptors, and every relative link reaches a file (and a README heading). All read
from the sources at test time, so a renamed setting or option fails here at once."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
from pathlib import Path

import veritas.v1
import yaml
from google.protobuf import descriptor_pool

from veritas_grpc import cli, config
from veritas_grpc.adapters import metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "OPERATIONS.md"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

VARIABLE = re.compile(r"\bVERITAS_[A-Z0-9_]+")
# `veritas <command> ...` where the command word stands (a line's start, after a space, a
# path's slash or a parenthesis): not `deployment/veritas` or `veritas-migrate`.
INVOCATION = re.compile(r"(?:^|(?<=[\s(/]))veritas[ \t]+([a-z][a-z-]*)(.*)")
# Where a shell command line ends and another command (or a redirection) begins.
COMMAND_END = re.compile(r"\s(?:\||&&|;|>|#)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Not module paths (veritas_grpc/..., veritas_grpc.cli).
METRIC = re.compile(r"\b(?:veritas|grpc_server)_[a-z0-9_]+(?![a-z0-9_]|/|\.[a-z])")
HISTOGRAM_SERIES = re.compile(r"_(?:bucket|sum|count)$")
ALERT = re.compile(r"(?<![A-Za-z])Veritas[A-Z][A-Za-z]+")
RPC = re.compile(r"\b([A-Z][A-Za-z]*Service)[./]([A-Z][A-Za-z]+)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def known_variables() -> set[str]:
    """The names config.py reads, and those the commands read themselves (the scorer's
    and the simulated agent's passwords), from their source."""
    sources = [Path(config.__file__), *Path(cli.__file__).parent.glob("cli*.py")]
    return {
        name for path in sources for name in re.findall(r'"(VERITAS_[A-Z0-9_]+)"', path.read_text())
    }


def unknown_variables(text: str) -> set[str]:
    return set(VARIABLE.findall(text)) - known_variables()


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _pieces(text: str) -> list[tuple[str, bool]]:
    """Each line cut at its backticks: (piece, is inline code)."""
    return [
        (piece, index % 2 == 1)
        for line in text.splitlines()
        for index, piece in enumerate(line.split("`"))
    ]


def _check_invocation(command: str, rest: str) -> list[str]:
    parser = _subcommands(cli.build_parser()).get(command)
    if parser is None:
        return [f"veritas {command}: no such command"]
    words = COMMAND_END.split(rest, maxsplit=1)[0].split()
    name = f"veritas {command}"
    nested = _subcommands(parser)
    if nested:
        if not words or words[0] not in nested:
            return [f"{name} {words[0] if words else ''}: no such subcommand".rstrip()]
        parser, name = nested[words[0]], f"{name} {words[0]}"
    options = set(parser._option_string_actions)
    return [
        f"{name} {option}: no such option"
        for word in words
        for option in OPTION.findall(word.split("=", 1)[0])
        if option not in options
    ]


def all_options() -> set[str]:
    found: set[str] = set()
    pending = [cli.build_parser()]
    while pending:
        parser = pending.pop()
        found |= set(parser._option_string_actions)
        pending += _subcommands(parser).values()
    return found


def unknown_commands(text: str) -> list[str]:
    """Each `veritas <command>` (and its subcommand) must exist, with each `--option`
    given on the same command line; an option alone in inline code (`--hold-days`) must
    be an option of some command."""
    problems: list[str] = []
    options = all_options()
    for piece, is_code in _pieces(text):
        for match in INVOCATION.finditer(piece):
            problems += _check_invocation(match.group(1), match.group(2))
        if is_code and piece.startswith("--"):
            option = OPTION.match(piece)
            if option and option.group() not in options:
                problems.append(f"{option.group()}: no veritas command has it")
    return problems


def known_metrics() -> set[str]:
    source = Path(metrics.__file__).read_text()
    return set(re.findall(r'"((?:veritas|grpc_server)_[a-z0-9_]+)"', source))


def unknown_metrics(text: str) -> set[str]:
    known = known_metrics()
    named = set(METRIC.findall(text))
    return {name for name in named if HISTOGRAM_SERIES.sub("", name) not in known} - known


def known_alerts() -> set[str]:
    [group] = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"] for rule in group["rules"]}


def unknown_alerts(text: str) -> set[str]:
    return set(ALERT.findall(text)) - known_alerts()


def _load_descriptors() -> None:
    for module in pkgutil.iter_modules(veritas.v1.__path__):
        if module.name.endswith("_pb2"):
            importlib.import_module(f"veritas.v1.{module.name}")


def unknown_rpcs(text: str) -> set[str]:
    _load_descriptors()
    pool = descriptor_pool.Default()
    unknown = set()
    for service, method in RPC.findall(text):
        try:
            found = pool.FindServiceByName(f"veritas.v1.{service}")
        except KeyError:
            unknown.add(f"{service}.{method}")
            continue
        if method not in found.methods_by_name:
            unknown.add(f"{service}.{method}")
    return unknown


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation gone, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def broken_links(text: str, base: Path) -> list[str]:
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        file = (base / path).resolve() if path else DOC
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", file.read_text(), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    return broken


def doc() -> str:
    return DOC.read_text()


def test_every_variable_is_a_setting():
    named = set(VARIABLE.findall(doc()))
    assert len(named) >= 30, "the runbook names the settings it relies on"
    assert unknown_variables(doc()) == set()


def test_every_command_and_option_parses():
    commands = {m.group(1) for piece, _ in _pieces(doc()) for m in INVOCATION.finditer(piece)}
    assert {"backup", "restore", "migrate", "scorer", "healthcheck", "audit"} <= commands
    assert unknown_commands(doc()) == []


def test_every_metric_is_defined():
    assert len(set(METRIC.findall(doc()))) >= 15
    assert unknown_metrics(doc()) == set()


def test_every_alert_is_a_rule():
    assert set(ALERT.findall(doc())) == known_alerts(), "each alert rule has its place"


def test_every_rpc_exists():
    assert unknown_rpcs(doc()) == set()


def test_every_link_resolves():
    assert broken_links(doc(), DOC.parent) == []


MADE_UP = """
Set `VERITAS_EXAM_MODE=strict` beside VERITAS_LISTEN.
`veritas rebuild-index`, `veritas backup DIR --compress`, `veritas audit repair`,
`veritas restore DIR --into URL --replace`, and `--hold-weeks` alone.
Watch `veritas_ingest_latency_seconds` and `veritas_writer_commit_seconds_bucket`.
Page on VeritasDiskFull and VeritasDown.
Call AdminService.UnlockEveryone and AdminService/UnlockSignIn.
See [nothing](NOPE.md) and [the README](../README.md#no-such-heading).
"""


def test_made_up_names_are_caught():
    """The checks above fail on a runbook that names what does not exist."""
    assert unknown_variables(MADE_UP) == {"VERITAS_EXAM_MODE"}
    assert unknown_commands(MADE_UP) == [
        "veritas rebuild-index: no such command",
        "veritas backup --compress: no such option",
        "veritas audit repair: no such subcommand",
        "--hold-weeks: no veritas command has it",
    ]
    assert unknown_metrics(MADE_UP) == {"veritas_ingest_latency_seconds"}
    assert unknown_alerts(MADE_UP) == {"VeritasDiskFull"}
    assert unknown_rpcs(MADE_UP) == {"AdminService.UnlockEveryone"}
    assert broken_links(MADE_UP, DOC.parent) == ["NOPE.md", "../README.md#no-such-heading"]
