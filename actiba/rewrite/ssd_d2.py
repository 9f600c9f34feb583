"""The SSD d2 rule moved to `rewrite.rules.ssd_d2`; these names stay for callers of the old module."""

from __future__ import annotations

from .rules.ssd_d2 import EQ_DIAG, EQ_G, EQ_OFF, EQ_STATES, NAME, REWRITE, D2Match, Roles, build, canonical, match  # noqa: F401
