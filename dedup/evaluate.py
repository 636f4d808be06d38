"""Pairwise precision and recall of predicted groups against true groups, without listing pairs.

Two listings form a predicted pair when they share a predicted group, a true pair when they
share a true group; the counts come from group-overlap sizes, so nothing is O(N^2).

>>> scores = pair_scores({"a": 1, "b": 1, "c": 1}, {"a": 0, "b": 0, "c": 2, "d": 2})
>>> scores["true_positive_pairs"], scores["predicted_pairs"], scores["true_pairs"]
(1, 3, 2)
>>> round(scores["precision"], 3), scores["recall"]
(0.333, 0.5)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def pair_scores(predicted: Mapping[str, Hashable], truth: Mapping[str, Hashable]) -> dict[str, float]:
    """``predicted`` and ``truth`` map productId -> group; products absent are singletons."""
    predicted_pairs = sum(_pairs(n) for n in Counter(predicted.values()).values())
    true_pairs = sum(_pairs(n) for n in Counter(truth.values()).values())
    overlap = Counter((group, truth[pid]) for pid, group in predicted.items() if pid in truth)
    true_positive = sum(_pairs(n) for n in overlap.values())
    precision = true_positive / predicted_pairs if predicted_pairs else 1.0
    recall = true_positive / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "true_positive_pairs": true_positive,
        "predicted_pairs": predicted_pairs,
        "true_pairs": true_pairs,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
