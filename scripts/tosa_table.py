"""Run TOSA TABLE graphs on Arm's TOSA reference model (tosa-tools), for the vendor slow suite.

Runs in the separate venv of scripts/setup_tosa.sh (tosa-tools cannot share the project venv; see that
script), so it imports nothing from actiba: numpy and the tosa-tools packages only.

    python scripts/tosa_table.py JOBS.json

JOBS.json is a list of jobs {"table": T.npy, "input": X.npy, "output": Y.npy, "rescale": bool}, paths
relative to the file's folder. Each job is one graph, built with the TOSA serialization library and run
by the reference model's Python binding:
  int8 input, 256-entry int8 table   -> TABLE             -> int8 out   (out = table[x + 128])
  int16 input, 513-entry int16 table -> TABLE             -> int32 out  ((base << 7) + slope * frac)
    with "rescale": TABLE then RESCALE(multiplier 2^30, shift 37, SINGLE_ROUND) -> int16 out,
    i.e. round(raw / 128) half up, the way a TFLite int16 LUT op is legalized to TOSA.
Writes each output .npy (int64) and prints one JSON line per job: {"output", "status"}; a graph the
reference model does not accept (status other than TOSA_VALID, e.g. a slope outside int16) writes no
output. Exit 2 on malformed jobs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tosa_reference_model as trm
import tosa_serializer as ts


def _graph(table: np.ndarray, n: int, rescale: bool) -> bytes:
    # TOSA 1.0 (final, not draft): the level the reference model validates TABLE against
    ser = ts.TosaSerializer("", targetMajor=1, targetMinor=0, targetPatch=0, targetDraft=False)
    if table.size == 256:
        dt_in, dt_out = ts.DType.INT8, ts.DType.INT8
    elif table.size == 513:
        dt_in, dt_out = ts.DType.INT16, ts.DType.INT32
    else:
        raise ValueError(f"table has {table.size} entries; TOSA TABLE takes 256 (int8) or 513 (int16)")
    x = ser.addPlaceholder([n], dt_in, None)  # vals is required before tosa-tools 2026.8
    t = ser.addConst([table.size], dt_in, table.astype(np.int8 if dt_in == ts.DType.INT8 else np.int16))
    attr = ts.TosaSerializerAttribute()
    attr.TableAttribute()
    if not rescale:
        out = ser.addOutput([n], dt_out)
        ser.addOperator(ts.Op.TABLE, [x.name, t.name], [out.name], attr)
        return ser.serialize()
    if dt_in != ts.DType.INT16:
        raise ValueError("rescale applies to the int16 TABLE only")
    raw = ser.addIntermediate([n], ts.DType.INT32)
    ser.addOperator(ts.Op.TABLE, [x.name, t.name], [raw.name], attr)
    mul = ser.addConst([1], ts.DType.INT32, np.array([1 << 30], dtype=np.int32))
    shift = ser.addConst([1], ts.DType.INT8, np.array([37], dtype=np.int8))
    izp = ser.addConst([1], ts.DType.INT32, np.array([0], dtype=np.int32))
    ozp = ser.addConst([1], ts.DType.INT16, np.array([0], dtype=np.int16))
    out = ser.addOutput([n], ts.DType.INT16)
    rattr = ts.TosaSerializerAttribute()
    rattr.RescaleAttribute(True, ts.RoundingMode.SINGLE_ROUND, False, False, False)
    ser.addOperator(ts.Op.RESCALE, [raw.name, mul.name, shift.name, izp.name, ozp.name], [out.name], rattr)
    return ser.serialize()


def run_job(job: dict, root: Path) -> dict:
    table = np.load(root / job["table"])
    x = np.load(root / job["input"])
    rescale = bool(job.get("rescale", False))
    dt = np.int8 if table.size == 256 else np.int16
    if x.ndim != 1 or x.min() < np.iinfo(dt).min or x.max() > np.iinfo(dt).max:
        raise ValueError(f"{job['input']}: input must be a 1-d {np.dtype(dt).name} array")
    outs, status = trm.run(_graph(table, x.size, rescale), [x.astype(dt)])
    res = {"output": job["output"], "status": status.name}
    if status == trm.GraphStatus.TOSA_VALID:
        np.save(root / job["output"], np.asarray(outs[0]).astype(np.int64))
    return res


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: tosa_table.py JOBS.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        jobs = json.loads(path.read_text())
        for job in jobs:
            print(json.dumps(run_job(job, path.parent)), flush=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"tosa_table: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
