"""The planner: named datasets and their edges, checked and ordered. Knows nothing of Spark."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import attrs

from etl_core.errors import ConfigIssue


@attrs.frozen
class Node:
    name: str
    kind: str  # "source" | "transform" | "sink"
    inputs: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"{self.kind}s.{self.name}"


@attrs.frozen
class Plan:
    nodes: Mapping[str, Node]
    order: tuple[str, ...]  # datasets (sources, transforms) in dependency order
    sinks: tuple[str, ...]
    unused: tuple[str, ...]  # datasets that feed no sink

    def consumers(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in n.inputs]

    def lineage(self, name: str) -> set[str]:
        """``name`` and every dataset it reads, directly or not."""
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += self.nodes[current].inputs
        return seen

    def needed(self) -> list[str]:
        """Datasets that feed a sink, in dependency order."""
        return [name for name in self.order if name not in self.unused]


def build_plan(
    sources: Sequence[str],
    transforms: Mapping[str, Sequence[str]],
    sinks: Mapping[str, str],
) -> tuple[Plan | None, list[ConfigIssue]]:
    """Check names and edges; order the datasets. Returns the plan or the issues found."""
    nodes: dict[str, Node] = {name: Node(name, "source") for name in sources}
    nodes.update({name: Node(name, "transform", tuple(ins)) for name, ins in transforms.items()})
    datasets = set(nodes)
    sink_nodes = {name: Node(name, "sink", (inp,) if inp else ()) for name, inp in sinks.items()}
    issues: list[ConfigIssue] = []
    if not sources:
        issues.append(
            ConfigIssue("sources", "the pipeline has no sources", "add a `sources:` block")
        )
    if not sinks:
        issues.append(ConfigIssue("sinks", "the pipeline has no sinks", "add a `sinks:` block"))
    for node in [*nodes.values(), *sink_nodes.values()]:
        key = "input" if node.kind == "sink" else "inputs"
        if node.kind != "source" and not node.inputs:
            issues.append(
                ConfigIssue(
                    f"{node.path}.{key}",
                    "required key is missing",
                    f"name the dataset(s) it reads, e.g. `{key}: ...`",
                )
            )
        for i, name in enumerate(node.inputs):
            if name not in datasets:
                at = f"{node.path}.{key}" + (f"[{i}]" if node.kind == "transform" else "")
                close = difflib.get_close_matches(name, sorted(datasets), n=1)
                fix = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else (f"known datasets: {', '.join(sorted(datasets))}")
                )
                issues.append(ConfigIssue(at, f"unknown input {name!r}", fix))
            elif name in node.inputs[:i]:
                issues.append(
                    ConfigIssue(
                        f"{node.path}.{key}[{i}]",
                        f"input {name!r} is listed twice",
                        "name each input once; to combine a dataset with itself use a `sql` "
                        "transform with aliases",
                    )
                )
    order = _order(nodes, issues)
    if issues:
        return None, issues
    feeding: set[str] = set()
    pending = [inp for node in sink_nodes.values() for inp in node.inputs]
    while pending:
        name = pending.pop()
        if name not in feeding:
            feeding.add(name)
            pending.extend(nodes[name].inputs)
    unused = tuple(name for name in order if name not in feeding)
    return Plan({**nodes, **sink_nodes}, tuple(order), tuple(sink_nodes), unused), []


def _order(nodes: Mapping[str, Node], issues: list[ConfigIssue]) -> list[str]:
    """Depth-first topological order; every cycle becomes one issue naming its path."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    order: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2 or name not in nodes:
            return
        if state.get(name) == 1:
            cycle = [*trail[trail.index(name) :], name]
            if frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                issues.append(
                    ConfigIssue(
                        f"transforms.{name}.inputs",
                        f"cycle: {' -> '.join(cycle)}",
                        "a transform cannot read its own output; break the loop",
                    )
                )
            return
        state[name] = 1
        for inp in nodes[name].inputs:
            visit(inp, [*trail, name])
        state[name] = 2
        order.append(name)

    for name in nodes:
        visit(name, [])
    return order
