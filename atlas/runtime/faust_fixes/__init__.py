"""Corrections to faust-streaming 0.15.3 that ATLAS's guarantees depend on, and one shortcut on its hot path.

Imported by `atlas.app` before the app is created. One module per part of Faust it corrects:
`producer` (flushes that wait for delivery, transactions that hold their writes, and the hot-path
shortcut), `assignor` (transactional ids stable across starts), `seek` (the seek to committed
offsets after recovery) and `recovery` (changelog recovery under exactly_once).
"""
from __future__ import annotations

from atlas.runtime.faust_fixes import assignor, producer, recovery, seek  # noqa: F401  (each patches Faust)
from atlas.runtime.faust_fixes.assignor import stable_groups
from atlas.runtime.faust_fixes.producer import handed_over

__all__ = ["handed_over", "stable_groups"]
