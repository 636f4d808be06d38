"""Bridges: the single links that alone hold two clusters of listings in one group.

Groups are connected components of the duplicate pairs, so one wrong pair between two groups of
``m`` and ``n`` listings puts ``m * n`` wrong pairs in the output. Two true groups of one shoot
are joined this way by one look-alike pair, or two screenshots in one template by their frame
(docs/BENCHMARKS.md, issue 14 phase 14). The copies of one photo rarely hang together by a single
link between two clusters: they match their original, and most of them one another.

:func:`links_to_cut` finds the **bridges** of one group's graph (a link on no cycle: removing it
disconnects the group; Tarjan's low-link, iteratively) and cuts those that leave at least
``min_side`` listings on each side, widest first (the smaller side the larger), each judged on
the graph left by the cuts before it: a listing linking two clusters stays with one of them. A
byte-identical link (``exact``) is never cut. :func:`split` gives each listing its new group,
named by its smallest id. O(bridges x links) for one group; the job runs it on the executors,
group by group, on groups of at most ``groups.max_size`` listings (dedup/groups.py).

>>> triangle_a = [(1, 2), (2, 3), (1, 3)]
>>> triangle_b = [(4, 5), (5, 6), (4, 6)]
>>> links = triangle_a + triangle_b + [(3, 4)]  # one link between two clusters of three
>>> links_to_cut(links, min_side=3)
[(3, 4)]
>>> split(links, min_side=3)
{1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4}
>>> links_to_cut(links, min_side=3, exact={(3, 4)})  # byte-identical: kept
[]
>>> links_to_cut([(1, 2), (2, 3), (3, 4)], min_side=3)  # a chain of four: no side of three
[]
>>> hub = triangle_a + triangle_b + [(3, 7), (7, 4)]  # listing 7 links the two clusters
>>> split(hub, min_side=3)
{1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 4}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator

Node = int | str  # a listing: the job's long id, or a productId in the devkit
Link = tuple[Node, Node]


def _graph(links: Iterable[Link]) -> dict[Node, set[Node]]:
    graph: dict[Node, set[Node]] = defaultdict(set)
    for a, b in links:
        if a != b:
            graph[a].add(b)
            graph[b].add(a)
    return graph


def bridges(graph: dict[Node, set[Node]]) -> list[Link]:
    """The bridges of an undirected graph (node -> neighbours), each as (a, b) with a < b, sorted."""
    order: dict[Node, int] = {}
    low: dict[Node, int] = {}
    found: list[Link] = []
    for root in sorted(graph):
        if root in order:
            continue
        order[root] = low[root] = len(order)
        stack: list[tuple[Node, Node | None, Iterator[Node]]] = [(root, None, iter(sorted(graph[root])))]
        while stack:
            node, parent, neighbours = stack[-1]
            step = next(neighbours, None)
            if step is None:
                stack.pop()
                if parent is not None:
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        found.append((min(node, parent), max(node, parent)))
            elif step == parent:
                continue
            elif step in order:
                low[node] = min(low[node], order[step])
            else:
                order[step] = low[step] = len(order)
                stack.append((step, node, iter(sorted(graph[step]))))
    return sorted(found)


def _reach(graph: dict[Node, set[Node]], start: Node, without: Link | None = None) -> set[Node]:
    """The nodes reachable from ``start`` (without crossing the link ``without``)."""
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        for other in graph[node]:
            if other not in seen and (node, other) != without and (other, node) != without:
                seen.add(other)
                todo.append(other)
    return seen


def links_to_cut(links: Iterable[Link], min_side: int, exact: Collection[Link] = ()) -> list[Link]:
    """The bridges of ``links`` (one group) to cut: each leaves ``min_side`` or more nodes on both
    sides, judged after the cuts before it, widest first; none in ``exact`` (either order)."""
    graph = _graph(links)
    kept = {(min(a, b), max(a, b)) for a, b in exact}

    def side(link: Link) -> int:
        return min(len(_reach(graph, link[0], link)), len(_reach(graph, link[1], link)))

    sides = {link: side(link) for link in bridges(graph) if link not in kept}
    cut: list[Link] = []
    for link in sorted(sides, key=lambda link: (-sides[link], link)):
        if sides[link] < min_side or (cut and side(link) < min_side):
            continue  # too small a side, or an earlier cut left it one
        graph[link[0]].discard(link[1])
        graph[link[1]].discard(link[0])
        cut.append(link)
    return cut


def split(links: Iterable[Link], min_side: int, exact: Collection[Link] = ()) -> dict[Node, Node]:
    """Each node of ``links`` -> its group after :func:`links_to_cut`: the smallest node id in it."""
    links = list(links)
    return groups_without(links, links_to_cut(links, min_side, exact))


def groups_without(links: Iterable[Link], cut: Collection[Link]) -> dict[Node, Node]:
    """Each node of ``links`` -> its group once the links ``cut`` are gone: the smallest node id in it."""
    links = list(links)
    cut = {(min(link), max(link)) for link in cut}
    graph = _graph(link for link in links if (min(link), max(link)) not in cut)
    for node in {node for link in links for node in link}:
        graph.setdefault(node, set())
    group: dict[Node, Node] = {}
    for node in sorted(graph):
        if node not in group:
            for member in _reach(graph, node):
                group[member] = node
    return dict(sorted(group.items()))
