"""Adaptive Calibration: firing-pattern search, spike compression, frontier solver, IAT."""
