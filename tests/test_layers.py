"""The packages import each other one way only: the package-level import graph is acyclic and
each edge points down the layers of ``.importlinter`` (which ``lint-imports`` enforces in CI at
module level; this test draws the same picture at package level and names any circle)."""

from __future__ import annotations

import grimp

#: Package-level nodes, top layer first; an edge may only point to a later entry (or a sibling
#: of the same layer for none of them: the three process roles are independent).
LAYERS = (("explorer.app",), ("actors", "learner", "llm_labeler"),
          ("explorer.intrinsic", "explorer.novelty"),
          ("explorer.memory",), ("explorer.core",))
NODES = tuple(node for layer in LAYERS for node in layer)


def _node(module: str) -> str | None:
    """The package-level node that owns ``module`` (None for ``explorer`` itself)."""
    return next((n for n in NODES if module == n or module.startswith(n + ".")), None)


def package_edges() -> set[tuple[str, str]]:
    graph = grimp.build_graph("explorer", "actors", "learner", "llm_labeler")
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            src, dst = _node(module), _node(imported)
            if src and dst and src != dst:
                edges.add((src, dst))
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """A circle in the directed graph, as a list of nodes, or None."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in succ.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(succ):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_a_circle() -> None:
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None


def test_package_imports_have_no_circle_and_point_down() -> None:
    edges = package_edges()
    assert ("explorer.app", "explorer.core") in edges  # the graph was really read
    assert find_cycle(edges) is None
    rank = {node: i for i, layer in enumerate(LAYERS) for node in layer}
    upward = sorted((a, b) for a, b in edges if rank[b] <= rank[a])
    assert upward == []
