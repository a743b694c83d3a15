"""Dependency graphs of steps within a pipeline and of pipelines within a file.

A graph is a mapping ``node -> the nodes it depends on``, in the order the nodes were
written; every function here keeps that order so that results (errors included) are
deterministic. Semantics follow Drone:

* steps run one after another unless some step declares ``depends_on``; then every step
  depends exactly on what it declares (drone-runner-docker ``engine/compiler/util.go``
  ``isGraph`` / ``configureSerial``);
* a detached step counts as finished once it has been launched (runner-go's runtime
  starts it in the background and carries on), so nothing waits for it to exit;
* a pipeline skipped by its ``trigger`` is bypassed: whoever depends on it depends on its
  own dependencies instead (drone/drone ``trigger/dag/dag.go`` ``Dependencies``).

The clone step and services are the engine's business, not this module's.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence, Set

__all__ = [
    "bypass",
    "duplicates",
    "find_cycle",
    "find_unknown",
    "step_dependencies",
    "topological_order",
]


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def step_dependencies(
    names: Sequence[str],
    depends_on: Mapping[str, Sequence[str]],
    detached: Set[str] = frozenset(),
) -> dict[str, tuple[str, ...]]:
    """Each step's dependencies, in ``names`` order.

    If no step declares ``depends_on`` the steps run in order: each depends on the one
    before it. Otherwise (DAG mode) each depends exactly on what it declares, so a step
    declaring nothing starts at once. Dependencies on a ``detached`` step are replaced by
    that step's own dependencies (see :func:`bypass`): a detached step is "done" as soon as
    it has been started, so its dependents become ready together with it and it is
    started first because it comes first in the order. Unknown names and cycles are kept
    as written, for :func:`find_unknown` and :func:`find_cycle` to report; ``names`` should
    be free of :func:`duplicates`.
    """
    deps: dict[str, tuple[str, ...]] = {}
    if any(depends_on.get(name) for name in names):
        for name in names:
            deps[name] = _unique(depends_on.get(name, ()))
    else:
        previous: tuple[str, ...] = ()
        for name in names:
            deps[name] = previous
            previous = (name,)
    return bypass(deps, detached) if detached else deps


def bypass(deps: Mapping[str, Sequence[str]], nodes: Set[str]) -> dict[str, tuple[str, ...]]:
    """The graph with every edge to one of ``nodes`` replaced by that node's dependencies.

    Applied transitively, as Drone does for pipelines skipped by their trigger: if ``c``
    depends on ``b``, which is skipped and depends on ``a``, then ``c`` depends on ``a``.
    All nodes stay in the result (drop the bypassed ones yourself if they will not run);
    unknown names are left alone.
    """

    def resolve(dep: str, seen: set[str]) -> list[str]:
        if dep not in nodes or dep not in deps:
            return [dep]
        if dep in seen:
            # A cycle through bypassed nodes: keep the edge so that find_cycle and
            # topological_order still see a cycle rather than a silently broken one.
            return [dep]
        seen.add(dep)
        out: list[str] = []
        for inner in deps[dep]:
            out.extend(resolve(inner, seen))
        return out

    result: dict[str, tuple[str, ...]] = {}
    for node, node_deps in deps.items():
        resolved: list[str] = []
        for dep in node_deps:
            resolved.extend(resolve(dep, {node}))
        result[node] = _unique(resolved)
    return result


def find_unknown(deps: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """Every ``(node, dependency)`` whose dependency is not a node of the graph."""
    return [(node, dep) for node, node_deps in deps.items() for dep in node_deps if dep not in deps]


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The first dependency cycle, as a path that ends where it starts (``[a, b, a]``;
    ``[a, a]`` for a step depending on itself), or None. Unknown names are ignored.

    Nodes are visited in graph order and dependencies in declared order, so the same graph
    always reports the same cycle.
    """
    visiting, done = 1, 2
    state: dict[str, int] = {}
    for root in deps:
        if root in state:
            continue
        # Iterative depth-first search: a long chain of steps must not hit the recursion
        # limit. Each frame is (node, index of the next dependency to look at).
        path: list[str] = [root]
        frames: list[tuple[str, int]] = [(root, 0)]
        state[root] = visiting
        while frames:
            node, index = frames[-1]
            node_deps = deps[node]
            if index == len(node_deps):
                frames.pop()
                path.pop()
                state[node] = done
                continue
            frames[-1] = (node, index + 1)
            dep = node_deps[index]
            if dep not in deps:
                continue
            if state.get(dep) == visiting:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                state[dep] = visiting
                path.append(dep)
                frames.append((dep, 0))
    return None


def topological_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """All nodes, each after everything it depends on.

    Stable: among the nodes that are ready at the same time, the one written first comes
    first, so a graph without edges keeps its order. Raises ValueError on a cycle or an
    unknown dependency.
    """
    unknown = find_unknown(deps)
    if unknown:
        node, dep = unknown[0]
        raise ValueError(f"{node!r} depends on {dep!r}, which does not exist")
    position = {node: index for index, node in enumerate(deps)}
    waiting_on = {node: len(_unique(node_deps)) for node, node_deps in deps.items()}
    dependents: dict[str, list[str]] = {node: [] for node in deps}
    for node, node_deps in deps.items():
        for dep in _unique(node_deps):
            dependents[dep].append(node)
    ready = [position[node] for node, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    nodes = list(deps)
    while ready:
        node = nodes[heapq.heappop(ready)]
        order.append(node)
        for dependent in dependents[node]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    if len(order) < len(deps):
        cycle = find_cycle(deps)
        shown = " -> ".join(cycle) if cycle else "unknown"
        raise ValueError(f"dependency cycle: {shown}")
    return order


def duplicates(names: Sequence[str]) -> list[str]:
    """Names that occur more than once, each reported once, in order of first repetition."""
    seen: set[str] = set()
    repeated: dict[str, None] = {}
    for name in names:
        if name in seen:
            repeated.setdefault(name, None)
        seen.add(name)
    return list(repeated)
