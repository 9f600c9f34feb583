"""What the fitter did and how good the result is: `FitReport` and its one-paragraph summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitReport:
    """What the fitter did and how good the result is (like scipy.optimize's result objects)."""

    segments: int
    error: dict[str, Any]
    range: tuple[float, float]
    tails: str
    metric: str
    continuous: bool
    seconds: float
    iterations: int = 0
    lower_bound: float | None = None  # no table of this kind (N, range, tails, continuity) beats it
    lower_bound_method: str | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    function: str = ""

    @property
    def _constrained_bound(self) -> bool:
        return bool(self.lower_bound_method) and self.lower_bound_method.startswith("exact discontinuous optimum under")

    def __str__(self) -> str:
        return self.summary(self.function or "table")

    def summary(self, name: str) -> str:
        e = self.error
        over = "all real x" if e.get("over") == "real-line" else f"[{self.range[0]:g}, {self.range[1]:g}]"
        txt = (f"{name}: {self.segments} {'continuous' if self.continuous else 'discontinuous'} segments, "
               f"tails {self.tails}, fitted for {self.metric} on [{self.range[0]:g}, {self.range[1]:g}] "
               f"in {self.seconds:.3f} s of fitting. Max-abs error {e['max_abs']:.4g} over {over}, "
               f"worst at x = {e['where']:.6g}; rms {e['rms']:.4g}")
        if e.get("max_rel") is not None and self.metric == "max-rel":
            txt += f", max-rel {e['max_rel']:.4g}"
        if e.get("half_line"):
            hl = e["half_line"]
            txt += f"; bound {hl['max_abs']:.4g} holds for {hl['holds_for']}"
        txt += (f". After rounding the table to float32: {e['float32_max_abs']:.4g}, "
                f"float16: {e['float16_max_abs']:.4g}.")
        if self.lower_bound is not None and self.lower_bound > 1e-15:
            kind = "continuous " if self.continuous else ""
            gap = e.get("domain_max_abs", e["max_abs"]) / self.lower_bound - 1
            how = "minimum-link certificate" if self.continuous else "sampled discontinuous optimum"
            which = "these tails"
            if self._constrained_bound:
                how, which = "sampled optimum under the same constraints", "these tails and constraints"
            txt += (f" No {kind}{self.segments}-segment table with {which} can beat {self.lower_bound:.4g} "
                    f"({how}): this one is within {100 * max(gap, 0.0):.2g} % of optimal.")
        con = e.get("constraints")
        if con:
            txt += " Constraints " + ", ".join(f"{k}={_show(v)}" for k, v in con["requested"].items())
            txt += (" met (re-verified)." if self._constrained_bound else
                    " met (re-verified); the bound is for tables without them (so valid with them too), and "
                    "the gap includes what they cost.")
            if con.get("search"):
                txt += f" Slopes/intercepts: {con['search']}."
        if self.message:
            txt += f" Note: {self.message}."
        return txt


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "..".join(str(e) for e in v)
    return str(v).lower() if isinstance(v, bool) else str(v)
