"""The rewrites a sweep configuration can turn on, by name: the one list `evaluate.configs` validates against.

Why a module of its own: configurations, sweep files and reports name rewrites as strings; one list
keeps them from drifting apart (the rule registry can replace it later).
"""

from __future__ import annotations

REWRITES = ("cumba", "reduba", "ssd-d1", "ssd-d2")
