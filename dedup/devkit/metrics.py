"""Quality metrics of predicted groups against a bench set's truth, in plain Python: one module for
``dedup eval`` (:mod:`dedup.devkit.evaluate`, whose Spark versions use its definitions) and the
bench scripts (``bench/quality.py``, ``bench/calibrate_photo.py``, ``bench/verifier.py``).

* Pairwise precision and recall: two listings form a predicted pair when they share a predicted
  group, a true pair when they share a true group; counted from group-overlap sizes, never by
  listing pairs (:func:`pair_scores`).
* A **look-alike false pair**: two originals (:data:`ORIGINAL_TRANSFORMS`) of different source
  photos put together, i.e. two different products that look alike (:func:`is_lookalike`).
* Recall per edit kind and per parameter range: the share of copies in their original's group.

>>> scores = pair_scores({"a": 1, "b": 1, "c": 1}, {"a": 0, "b": 0, "c": 2, "d": 2})
>>> scores["true_positive_pairs"], scores["predicted_pairs"], scores["true_pairs"]
(1, 3, 2)
>>> round(scores["precision"], 3), scores["recall"]
(0.333, 0.5)
>>> components({"a": ["b"], "c": ["b"], "d": ["e"]})
[['a', 'b', 'c'], ['d', 'e']]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from dedup import bridges

ORIGINAL_TRANSFORMS = ("original", "exact_real")  # truth transforms of real photos (not edited copies)

Truth = list[dict[str, str]]  # truth.csv rows (dedup.devkit.benchset.read_truth)


def n_pairs(n: int) -> int:
    """Pairs among ``n`` members."""
    return n * (n - 1) // 2


def scores_from_counts(true_positive: int, predicted: int, true_pairs: int) -> dict[str, float]:
    """Pairwise precision, recall and F1 from pair counts (an empty side scores 1.0)."""
    precision = true_positive / predicted if predicted else 1.0
    recall = true_positive / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_positive_pairs": true_positive,
        "predicted_pairs": predicted,
        "true_pairs": true_pairs,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def pair_scores(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> dict[str, float]:
    """``predicted`` and ``truth`` map productId -> group; products absent are singletons."""
    predicted_pairs = sum(n_pairs(n) for n in Counter(predicted.values()).values())
    true_pairs = sum(n_pairs(n) for n in Counter(truth.values()).values())
    overlap = Counter((group, truth[pid]) for pid, group in predicted.items() if pid in truth)
    true_positive = sum(n_pairs(n) for n in overlap.values())
    return scores_from_counts(true_positive, predicted_pairs, true_pairs)


def is_original(row: Mapping[str, str]) -> bool:
    """A real photo of the set (not an edited copy)."""
    return row["transform"] in ORIGINAL_TRANSFORMS


def is_lookalike(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Two truth rows that are originals of different photos: a pair of them is a look-alike false pair."""
    return is_original(a) and is_original(b) and a["source"] != b["source"]


def lookalike_false_pairs(predicted: Mapping[str, Hashable], rows: Mapping[str, Mapping[str, str]]) -> int:
    """Look-alike false pairs among the pairs implied by ``predicted`` (productId -> group) over
    the truth ``rows`` (productId -> row): originals grouped, less those of one source photo."""
    originals = [(group, rows[p]["source"]) for p, group in predicted.items() if p in rows and is_original(rows[p])]
    grouped = sum(n_pairs(n) for n in Counter(group for group, _ in originals).values())
    return grouped - sum(n_pairs(n) for n in Counter(originals).values())


def true_pair_count(truth: Truth, split: str) -> int:
    """True pairs among the listings of ``split``."""
    return sum(n_pairs(n) for n in Counter(t["group"] for t in truth if t["group"] and t["split"] == split).values())


def copy_pairs(pairs: Iterable[tuple[str, str]], truth: Truth) -> list[bool]:
    """For each pair of productIds, whether both listings are of one group (copies of one photo).

    >>> truth = [{"productId": "a", "group": "g"}, {"productId": "b", "group": "g"}, {"productId": "c", "group": ""}]
    >>> copy_pairs([("a", "b"), ("a", "c"), ("c", "c")], truth)
    [True, False, False]
    """
    group = {row["productId"]: row["group"] for row in truth}
    return [group[a] != "" and group[a] == group[b] for a, b in pairs]


def edit_kind(transform: str) -> str:
    """The edit kind of a truth row's ``transform``: its name before any ``:`` (a stack's steps, an
    augly call list).

    >>> edit_kind("stack:resize+stretch"), edit_kind("augly:blur"), edit_kind("original")
    ('stack', 'augly', 'original')
    """
    return transform.split(":", 1)[0]


def range_labels(row: Mapping[str, str]) -> list[str]:
    """A truth row's parameter-range labels (``ranges``, ``;``-separated; none in a v1 file)."""
    return [label for label in (row.get("ranges") or "").split(";") if label]


def score_groups(groups: Iterable[list[str]], truth: Truth, split: str) -> dict[str, Any]:
    """Group-level scores of ``groups`` (lists of productIds) on the listings of ``split``:
    pairwise precision, recall and F1, look-alike false pairs, and recall per edit kind and per
    parameter range (the share of copies in their original's group)."""
    rows = {t["productId"]: t for t in truth if t["split"] == split}
    predicted: dict[str, int] = {}
    for index, group in enumerate(groups):
        members = [pid for pid in group if pid in rows]
        if len(members) > 1:
            predicted.update((pid, index) for pid in members)
    true_groups = {pid: t["group"] for pid, t in rows.items() if t["group"]}
    scores: dict[str, Any] = pair_scores(predicted, true_groups)
    scores["lookalike_false_pairs"] = lookalike_false_pairs(predicted, rows)
    original_of = {t["group"]: pid for pid, t in rows.items() if t["group"] and t["transform"] == "original"}
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_range: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pid, t in rows.items():
        if t["group"] and t["transform"] != "original":
            other = original_of.get(t["group"])
            grouped = int(pid in predicted and predicted.get(other) == predicted[pid])
            for counts in [by_kind[edit_kind(t["transform"])], *(by_range[r] for r in range_labels(t))]:
                counts[0] += 1
                counts[1] += grouped
    scores["recall_by_transform"] = {k: {"copies": n, "recall": found / n} for k, (n, found) in sorted(by_kind.items())}
    scores["recall_by_range"] = {k: {"copies": n, "recall": found / n} for k, (n, found) in sorted(by_range.items())}
    return scores


def components(links: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Connected components (two or more members, each sorted) of a member -> linked members map."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name, others in links.items():
        for other in others:
            parent[find(name)] = find(other)
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(find(name), []).append(name)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def edge_components(
    a: Iterable[str],
    b: Iterable[str],
    exact: Iterable[bool] | None = None,
    bridge_min_side: int = 0,
    max_size: int | None = None,
) -> list[list[str]]:
    """:func:`components` of the edges ``a[i]``-``b[i]``; with ``bridge_min_side``, each of at most
    ``max_size`` members split by the job's bridge guard (:func:`dedup.bridges.split`; ``exact[i]``:
    the edge is byte-identical, never cut), as ``groups.bridge_min_side`` splits the job's groups.

    >>> a, b = ["p1", "p2", "p1", "p4", "p5", "p4", "p3"], ["p2", "p3", "p3", "p5", "p6", "p6", "p4"]
    >>> edge_components(a, b)
    [['p1', 'p2', 'p3', 'p4', 'p5', 'p6']]
    >>> edge_components(a, b, bridge_min_side=3)
    [['p1', 'p2', 'p3'], ['p4', 'p5', 'p6']]
    """
    pairs = list(zip(a, b, strict=True))
    links: dict[str, list[str]] = defaultdict(list)
    for x, y in pairs:
        links[x].append(y)
    found = components(links)
    if bridge_min_side <= 0:
        return found
    exact_pairs = {pair for pair, same in zip(pairs, exact, strict=True) if same} if exact is not None else set()
    at = {member: i for i, group in enumerate(found) for member in group}
    edges: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for x, y in pairs:
        edges[at[x]].append((x, y))
    out: list[list[str]] = []
    for i, group in enumerate(found):
        if not 2 * bridge_min_side <= len(group) <= (max_size or len(group)):
            out.append(group)
            continue
        named = bridges.split(edges[i], bridge_min_side, [p for p in edges[i] if p in exact_pairs])
        parts: dict[str, list[str]] = defaultdict(list)
        for member, part in named.items():
            parts[part].append(member)
        out.extend(sorted(part) for part in parts.values() if len(part) > 1)
    return out
