"""Calibration: which values each activation site of a model really sees.

`capture.calibrate` runs a model on text and records per-site statistics (`stats.CalibrationStats`,
the `actiba-calibration/1` file); `actiba.fitting.calibrated` fits tables to them. The statistics
module is numpy-only; torch is imported only when capturing or fingerprinting.
"""

from __future__ import annotations

from .capture import calibrate
from .stats import FORMAT, PERCENTILES, CalibrationStats, SiteStats, load_stats, model_fingerprint, pooled

__all__ = ["FORMAT", "PERCENTILES", "CalibrationStats", "SiteStats", "calibrate", "load_stats",
           "model_fingerprint", "pooled"]
