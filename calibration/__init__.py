"""Calibration datasets, quantizers and accuracy evaluation (a later issue fills this package)."""
