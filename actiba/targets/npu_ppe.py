"""`npu-ppe`: a PPE-style segment table (Intel NPU post-processing engine style) — power-of-two slopes.

The format (integer semantics, simulator, float-table and C conversions, `--param` keys) is
`ppe_format`; this module fits tables to it.

Constrained fit (against that integer model, over all 8192 inputs):
  1. minimax DP over boundaries on a 32-code lattice, each segment taking its best slope among all
     representable ones (exact range queries of f - slope*q per candidate slope);
  2. every interior boundary re-placed at full 1-code resolution (min of the neighbours' max error);
  3. per segment, the best few slopes with integer biases searched around the minimax centre, scored by
     the simulator itself (output rounding and saturation included);
  4. boundaries nudged again with the exact simulated error, biases re-searched.
`monotone=auto` (opt-in) keeps the output monotone where f is monotone on the grid: slopes of one
sign, and step 3 becomes a min-max Viterbi over the segments' (slope, bias) candidates that forbids any
step back at a boundary (the boundaries still come from the unconstrained DP, hence the cost).
`tails`: "clamp" forces slope 0 on the outer segments, "asymptote" forces the asymptote's slope there
when it is representable (0 or ±2^k); either way the hardware saturates its input outside the grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table
from .base import INT32_MAX, monotone_sign
from .float_start import float_fit
from .ppe_format import MAX_SEGMENTS, QMAX, QMIN, PpeConfig, PpeFormat, Q, accumulate, requantize

BLOCK = 32  # the boundary DP's lattice, in input codes (step 2 re-places every boundary at 1 code)


class NpuPpe(PpeFormat):
    """The registered `npu-ppe` target: the format plus its constrained fit and the naive baseline."""

    _mono = 0  # monotone direction of the fit in progress (set by `fit`)

    # -- fitting ----------------------------------------------------------------------------------
    def _slopes(self, p: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All representable slopes as (sigma in acc units per code, sign, shift)."""
        ks = np.arange(-p["frac_bits"], p["max_shift"] + 1)
        sign = np.concatenate([[0], np.ones(ks.size), -np.ones(ks.size)]).astype(np.int64)
        shift = np.concatenate([[0], ks, ks]).astype(np.int64)
        sigma = sign * (np.int64(1) << (p["frac_bits"] + shift))
        return sigma, sign, shift

    def _allowed(self, act: Activation, tails: str, side: str, sign: np.ndarray,
                 shift: np.ndarray) -> np.ndarray:
        ok = np.ones(sign.size, dtype=bool)
        if tails == "clamp":
            return sign == 0
        if tails == "asymptote":
            line = act.left if side == "left" else act.right
            if line is not None:
                a = line[0]
                real = np.where(sign == 0, 0.0, sign * np.exp2(shift.astype(np.float64)))
                hit = real == a
                if hit.any():
                    return hit
        return ok

    def _fit(self, activation: Activation, segments: int = 8, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        if not 1 <= int(segments) <= MAX_SEGMENTS:
            raise InputError(f"npu-ppe supports 1..{MAX_SEGMENTS} segments, got {segments}")
        if tails not in ("free", "asymptote", "clamp"):
            raise InputError(f"tails must be free, asymptote or clamp, got {tails!r}")
        S = int(segments)
        p = self.resolve(activation, lo, hi, params)
        base = self.make(p, [QMIN, QMAX], [0], [0], [0])
        u = base.acc_unit
        x = p["input_scale"] * (Q - p["input_zero_point"]).astype(np.float64)
        y = np.asarray(activation(x), dtype=np.float64)
        A = y / u
        sigma, sign, shift = self._slopes(p)
        R = A[None, :] - sigma[:, None].astype(np.float64) * Q[None, :].astype(np.float64)
        allow_l = self._allowed(activation, tails, "left", sign, shift)
        allow_r = self._allowed(activation, tails, "right", sign, shift)
        allow_all = np.ones(sigma.size, dtype=bool)
        mono = monotone_sign(y) if p["monotone"] == "auto" else 0
        if mono:
            allow_l, allow_r, allow_all = (a & (mono * sign >= 0) for a in (allow_l, allow_r, allow_all))
        allow = [allow_l if j == 0 else allow_r if j == S - 1 else allow_all for j in range(S)]
        if S == 1:
            allow = [allow_l & allow_r if (allow_l & allow_r).any() else allow_l]
        self._mono = mono

        bounds = self._dp(R, S, allow)
        bounds = self._refine_continuous(R, bounds, allow)
        cfg = self.make(p, bounds, [0] * S, [0] * S, [0] * S)
        cfg = self._reseg(cfg, bounds, list(range(S)), R, A, y, sigma, sign, shift, allow)
        cfg = self._nudge(cfg, R, A, y, sigma, sign, shift, allow)
        return self.to_table(cfg, activation, "boundary DP + power-of-two slopes + integer bias search "
                                              "against the simulator")

    def _dp(self, R: np.ndarray, S: int, allow: list[np.ndarray]) -> list[int]:
        """Minimax boundaries on the BLOCK lattice; cost = best half-range of f - slope*q."""
        nb = Q.size // BLOCK
        Rb = R.reshape(R.shape[0], nb, BLOCK)
        bmax, bmin = Rb.max(2), Rb.min(2)
        # cost[a, b] for blocks a..b-1, per allowed-slope class (interior / first / last)
        classes = {id(a): a for a in allow}
        cost = {}
        for key, al in classes.items():
            c = np.full((nb + 1, nb + 1), np.inf)
            mx, mn = bmax[al], bmin[al]
            for a in range(nb):
                run = (np.maximum.accumulate(mx[:, a:], axis=1) - np.minimum.accumulate(mn[:, a:], axis=1))
                c[a, a + 1:] = run.min(0) / 2
            cost[key] = c
        E = cost[id(allow[0])][0].copy()  # one segment covering blocks 0..b-1
        choice = []
        for j in range(1, S):
            c = cost[id(allow[j])]
            tot = np.maximum(E[:, None], c)  # [a, b]
            arg = np.argmin(tot, axis=0)
            choice.append(arg)
            E = tot[arg, np.arange(nb + 1)]
        bounds_blocks = [nb]
        b = nb
        for arg in reversed(choice):
            b = int(arg[b])
            bounds_blocks.append(b)
        bounds_blocks.append(0)
        bb = sorted(bounds_blocks)
        out = [QMIN + BLOCK * v for v in bb]
        out[-1] = QMAX
        # degenerate (empty) segments cannot happen: cost of an empty range is inf
        return out

    @staticmethod
    def _seg_slice(bounds: list[int], j: int) -> slice:
        a = bounds[j] - QMIN
        b = bounds[j + 1] - QMIN + (1 if j == len(bounds) - 2 else 0)
        return slice(a, b)

    def _refine_continuous(self, R: np.ndarray, bounds: list[int], allow: list[np.ndarray]) -> list[int]:
        bounds = list(bounds)

        def cost(a: int, b: int, al: np.ndarray) -> float:  # q in [a, b) as grid offsets
            r = R[al, a:b]
            return float(((r.max(1) - r.min(1)) / 2).min())

        for _ in range(2):
            for j in range(1, len(bounds) - 1):
                lo_b, hi_b = bounds[j - 1] + 1, bounds[j + 1] - 1
                end = bounds[j + 1] - QMIN + (1 if j + 1 == len(bounds) - 1 else 0)
                best = (math.inf, bounds[j])
                for pos in range(max(lo_b, bounds[j] - BLOCK), min(hi_b, bounds[j] + BLOCK) + 1):
                    c = max(cost(bounds[j - 1] - QMIN, pos - QMIN, allow[j - 1]),
                            cost(pos - QMIN, end, allow[j]))
                    if c < best[0]:
                        best = (c, pos)
                bounds[j] = best[1]
        return bounds

    def _candidates(self, cfg: PpeConfig, R, y, sigma, sign, shift, bounds: list[int], j: int,
                    al: np.ndarray, keep: int = 4) -> dict[str, np.ndarray]:
        """(sign, shift, bias) candidates for segment j with their exact simulated error.

        The best `keep` slopes by continuous minimax cost, biases around each one's minimax centre
        (wider when monotone, so neighbours can meet without a step back).
        """
        sl = self._seg_slice(bounds, j)
        q, yy = Q[sl], y[sl]
        r = R[:, sl]
        half = (r.max(1) - r.min(1)) / 2
        half[~al] = np.inf
        order = [i for i in np.argsort(half)[:keep] if np.isfinite(half[i])]
        lsb = 2.0 ** cfg.post_shift / cfg.multiplier  # accumulator units per output step
        bmin, bmax = -(2 ** (cfg.bias_bits - 1)), 2 ** (cfg.bias_bits - 1) - 1
        spread = np.linspace(-1.5, 1.5, 31) if self._mono else np.linspace(-0.6, 0.6, 13)
        cols: dict[str, list] = {k: [] for k in ("sign", "shift", "bias", "mx", "sq", "first", "last")}
        for i in order:
            centre = (r[i].max() + r[i].min()) / 2
            cands = np.unique(np.clip(np.rint(centre + lsb * spread), bmin, bmax)).astype(np.int64)
            acc = sigma[i] * q[None, :] + cands[:, None]
            if np.abs(acc).max() > INT32_MAX:
                continue
            out = requantize(cfg, acc)
            err = np.abs(cfg.output_scale * (out - cfg.output_zero_point) - yy[None, :])
            n = cands.size
            cols["sign"].append(np.full(n, sign[i]))
            cols["shift"].append(np.full(n, shift[i]))
            cols["bias"].append(cands)
            cols["mx"].append(err.max(1))
            cols["sq"].append((err * err).sum(1))
            cols["first"].append(out[:, 0])
            cols["last"].append(out[:, -1])
        if not cols["bias"]:
            raise InputError(f"npu-ppe: no representable slope/bias for segment {j} (bias_bits too small?)")
        return {k: np.concatenate(v) for k, v in cols.items()}

    def _chain(self, cfg: PpeConfig, R, y, sigma, sign, shift, allow, bounds: list[int], segs: list[int],
               floor: int | None, ceil: int | None) -> list[tuple[int, int, int]]:
        """Jointly best (sign, shift, bias) for consecutive segments `segs` (min-max Viterbi, ties by
        squared error). When monotone, no output may step back at a boundary, including against the
        fixed neighbours' outputs `floor` (before) and `ceil` (after)."""
        m = self._mono
        C = [self._candidates(cfg, R, y, sigma, sign, shift, bounds, j, allow[j]) for j in segs]

        def mask_ends(k: int) -> np.ndarray:
            ok = np.ones(C[k]["bias"].size, dtype=bool)
            if m and k == 0 and floor is not None:
                ok &= m * (C[k]["first"] - floor) >= 0
            if m and k == len(C) - 1 and ceil is not None:
                ok &= m * (ceil - C[k]["last"]) >= 0
            return ok

        def trans(k: int) -> np.ndarray:
            if not m:
                return np.ones((C[k - 1]["bias"].size, C[k]["bias"].size), dtype=bool)
            return m * (C[k]["first"][None, :] - C[k - 1]["last"][:, None]) >= 0

        V = np.where(mask_ends(0), C[0]["mx"], np.inf)
        for k in range(1, len(C)):
            tot = np.where(trans(k), np.maximum(V[:, None], C[k]["mx"][None, :]), np.inf)
            V = np.where(mask_ends(k), tot.min(0), np.inf)
        tau = float(V.min())
        if not np.isfinite(tau):
            raise InputError("npu-ppe: no monotone choice of biases; pass --param monotone=off")
        tau = tau * (1 + 1e-12) + 1e-15
        W = np.where(mask_ends(0) & (C[0]["mx"] <= tau), C[0]["sq"], np.inf)
        args = []
        for k in range(1, len(C)):
            ok = trans(k) & (C[k]["mx"] <= tau)[None, :] & mask_ends(k)[None, :]
            tot = np.where(ok, W[:, None] + C[k]["sq"][None, :], np.inf)
            args.append(np.argmin(tot, axis=0))
            W = tot[args[-1], np.arange(tot.shape[1])]
        pick = [int(np.argmin(W))]
        for arg in reversed(args):
            pick.append(int(arg[pick[-1]]))
        pick.reverse()
        return [(int(c["sign"][i]), int(c["shift"][i]), int(c["bias"][i])) for c, i in zip(C, pick, strict=True)]

    def _nudge(self, cfg: PpeConfig, R, A, y, sigma, sign, shift, allow) -> PpeConfig:
        """Exact-error boundary moves (±1..±16 codes), re-choosing the two touched segments."""
        def seg_err(c: PpeConfig, j: int) -> float:
            sl = self._seg_slice(c.boundaries, j)
            out = requantize(c, accumulate(c, Q[sl]))
            return float(np.abs(c.output_scale * (out - c.output_zero_point) - y[sl]).max())

        S = cfg.segments
        for _ in range(2):
            for j in range(1, S):
                cur = max(seg_err(cfg, j - 1), seg_err(cfg, j))
                for d in (-16, -8, -4, -2, -1, 1, 2, 4, 8, 16):
                    pos = cfg.boundaries[j] + d
                    if not cfg.boundaries[j - 1] < pos < cfg.boundaries[j + 1]:
                        continue
                    b = list(cfg.boundaries)
                    b[j] = pos
                    try:
                        trial = self._reseg(cfg, b, [j - 1, j], R, A, y, sigma, sign, shift, allow)
                    except InputError:
                        continue
                    e = max(seg_err(trial, j - 1), seg_err(trial, j))
                    if e < cur - 1e-15:
                        cfg, cur = trial, e
        return cfg

    def _reseg(self, cfg: PpeConfig, bounds, segs, R, A, y, sigma, sign, shift, allow) -> PpeConfig:
        """Re-choose consecutive segments `segs` on `bounds`, the others fixed."""
        d = cfg.to_dict()
        d.pop("name")
        d["boundaries"] = list(bounds)
        fixed = PpeConfig(**d)
        lo, hi = segs[0], segs[-1]
        floor = ceil = None
        if lo > 0:
            floor = int(requantize(fixed, accumulate(fixed, np.array([bounds[lo] - 1])))[0])
        if hi < cfg.segments - 1:
            ceil = int(requantize(fixed, accumulate(fixed, np.array([bounds[hi + 1]])))[0])
        picks = self._chain(fixed, R, y, sigma, sign, shift, allow, bounds, segs, floor, ceil)
        for j, (sg, k, b) in zip(segs, picks, strict=True):
            d["signs"][j], d["shifts"][j], d["biases"][j] = sg, k, b
        return PpeConfig(**d)

    def naive(self, activation: Activation, segments: int = 8, lo: float = -8.0, hi: float = 8.0,
              tails: str = "free", params: Mapping[str, Any] | None = None, fallback: bool = False) -> Table:
        """Round a float fit: boundaries to codes, slopes to the nearest power of two, biases to integers."""
        p = self.resolve(activation, lo, hi, params)
        ft = float_fit(activation, int(segments), lo, hi, tails, fallback=fallback)
        cfg = self.quantize_float(ft, p)
        return self.to_table(cfg, activation, "naive rounding of a float table")

