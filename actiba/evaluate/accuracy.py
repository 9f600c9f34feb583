"""How sure an accuracy difference is: paired per-window differences on the same held-out text.

Why paired: two configurations score the same windows, and most of a window's bits/byte is the text
(how predictable that passage is), which cancels in the difference. The spread of the per-window
differences is what a different sample of text would change the difference by; on the embedded models
it is ~100x tighter than the unpaired spread of either metric. A loss change inside that interval is a
tie: the Pareto test, the recommendation and the report all use it.

Why a floor (`LOSS_RESOLUTION`): exact rewrites (CumBA, ReduBA, SSD d1/d2) change bits/byte by 1e-8
relative from float summation order alone, consistently enough that a paired interval can exclude 0;
no user cares, and a front that keeps `ssd-d1` at 1.15x beside `ssd-d1+d2+chunk32` at 1.66x for it is
noise. One part per million is far above that roundoff and far below any table's effect (>= 5e-5 here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .row import Row

Z95 = 1.96
LOSS_RESOLUTION = 1e-6  # relative bits/byte change below which two configurations are equally accurate


def paired_halfwidth(a: Sequence[float], b: Sequence[float]) -> float | None:
    """~95 % half-width of (sum a - sum b) / sum b from per-window values of both (None if unusable).

    The windows are a sample of text; the total difference is n times the mean per-window difference,
    whose standard error is sd/sqrt(n).
    """
    n = len(a)
    if n < 2 or len(b) != n:
        return None
    total_b = math.fsum(b)
    if not total_b:
        return None
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = math.fsum(d) / n
    var = math.fsum((x - mean) ** 2 for x in d) / (n - 1)
    return max(LOSS_RESOLUTION, Z95 * math.sqrt(n * var) / abs(total_b))


def own_halfwidth(nats: Sequence[float], seq_len: float) -> float | None:
    """~95 % half-width of a row's bits/byte itself (unpaired: what another text sample would give).

    `seq_len`: bytes per window (the window length for byte ids; with a real tokenizer the mean bytes
    a window covers, `measure.score`)."""
    n = len(nats)
    if n < 2:
        return None
    bpb = [v / math.log(2) / seq_len for v in nats]
    mean = math.fsum(bpb) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in bpb) / (n - 1))
    return Z95 * sd / math.sqrt(n)


def _windows(row: Row) -> list[float] | None:
    w = row.metric_windows
    return w if isinstance(w, list) and len(w) >= 2 else None


def _halfwidth(row: Row) -> float:
    hw = row.metric_delta_halfwidth_rel
    return float(hw) if isinstance(hw, (int, float)) and math.isfinite(hw) else 0.0


def tolerance(a: Row, b: Row, base_total: float | None = None) -> float:
    """The relative bits/byte difference between rows `a` and `b` that is still a tie.

    Paired over their windows when both have them (relative to the baseline's total, as
    `metric_delta_rel` is), else the two rows' own half-widths against the baseline combined, else 0
    (rows from before uncertainties were recorded compare exactly, as they always did).
    """
    wa, wb = _windows(a), _windows(b)
    if wa is not None and wb is not None and len(wa) == len(wb):
        hw = paired_halfwidth(wa, wb)
        if hw is not None:
            if base_total:  # paired_halfwidth is relative to b's total; the deltas are relative to the baseline
                hw = max(LOSS_RESOLUTION, hw * abs(math.fsum(wb)) / abs(base_total))
            return hw
    return math.hypot(_halfwidth(a), _halfwidth(b))
