"""adacal: Adaptive Calibration (Wang et al., AAAI 2025) ANN-to-SNN conversion."""

__version__ = "0.1.0"
