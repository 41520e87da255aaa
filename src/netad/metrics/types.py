"""Recall per attack type and family, and over the types a model saw in training apart from those it never saw.

A model that detects the attack types of its training rows may still miss new ones; the recall on unseen
types is the number that says how it will do on tomorrow's attacks.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

#: the family of an attack type that ``data.type_families`` does not list (an evaluation file's new types)
NO_FAMILY = "(none)"


def _recall(detected: int, rows: int) -> float:
    return detected / rows if rows else math.nan


def seen_rows(types: np.ndarray, seen_types: Optional[list[str]]) -> Optional[np.ndarray]:
    """Per row: is its attack type one of ``seen_types`` (None when the model recorded none)?"""
    if seen_types is None:
        return None
    return np.isin(types.astype(str), np.asarray(list(seen_types), dtype=str))


def type_recall(flagged: Any, labels: Any, types: Any, seen: Optional[Any] = None,
                family_of: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Recall among the anomalous rows, per attack type and per family, and over seen and unseen types.

    ``flagged``: 0/1 (or bool) per row, the model's decision; ``seen``: per row, whether the model's training
    rows held that row's attack type (None: unknown, no seen/unseen split). Types are listed by row count.
    """
    flagged = np.asarray(flagged).astype(bool)
    attack = np.asarray(labels) == 1
    types = np.asarray(types, dtype=object).astype(str)
    family_of = family_of or {}
    seen_arr = None if seen is None else np.asarray(seen, dtype=bool)
    per_type = []
    for name in np.unique(types[attack]):
        rows = attack & (types == name)
        n, k = int(rows.sum()), int((flagged & rows).sum())
        entry = {"type": str(name), "family": family_of.get(str(name), NO_FAMILY) if family_of else None,
                 "rows": n, "detected": k, "recall": _recall(k, n)}
        if seen_arr is not None:
            share = float(seen_arr[rows].mean())
            entry["seen"] = bool(share == 1.0) if share in (0.0, 1.0) else share  # a share when folds differ
        per_type.append(entry)
    per_type.sort(key=lambda e: (-e["rows"], e["type"]))
    out: dict[str, Any] = {"types": per_type}
    if family_of:
        families: dict[str, list[int]] = {}
        for e in per_type:
            counts = families.setdefault(e["family"], [0, 0])
            counts[0] += e["rows"]
            counts[1] += e["detected"]
        out["families"] = sorted(({"family": f, "rows": n, "detected": k, "recall": _recall(k, n)}
                                  for f, (n, k) in families.items()), key=lambda e: (-e["rows"], e["family"]))
    if seen_arr is not None:
        for part, mask in (("seen", attack & seen_arr), ("unseen", attack & ~seen_arr)):
            n, k = int(mask.sum()), int((flagged & mask).sum())
            out.update({f"{part}_rows": n, f"{part}_recall": _recall(k, n)})
    return out


def format_type_table(result: dict[str, Any], limit: Optional[int] = None) -> str:
    """The per-type (and per-family) recall as text lines for people."""
    has_seen = "seen_recall" in result
    lines = [f"{'attack type':<20} {'family':<10} {'rows':>7} {'recall':>7}" + ("  seen in training" if has_seen else "")]
    shown = result["types"] if limit is None else result["types"][:limit]
    for e in shown:
        seen = ""
        if has_seen:
            seen = "  yes" if e.get("seen") is True else "  no" if e.get("seen") is False else f"  in {e['seen']:.0%} of folds"
        lines.append(f"{e['type'][:20]:<20} {(e['family'] or '-')[:10]:<10} {e['rows']:>7} {e['recall']:>7.3f}{seen}")
    if limit is not None and len(result["types"]) > limit:
        lines.append(f"... {len(result['types']) - limit} more types")
    for e in result.get("families", []):
        lines.append(f"{'family ' + e['family']:<31} {e['rows']:>7} {e['recall']:>7.3f}")
    if has_seen:
        for part in ("seen", "unseen"):
            n, r = result[f"{part}_rows"], result[f"{part}_recall"]
            lines.append(f"{part + '-type recall':<31} {n:>7} " + (f"{r:>7.3f}" if n else f"{'-':>7}"))
    return "\n".join(lines)
