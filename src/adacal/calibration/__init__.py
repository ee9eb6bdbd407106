"""Threshold fitting and SNN Calibration (bias, potential and weight calibration)."""

from adacal.calibration.bias import BiasCorrection, PotentialCalibration
from adacal.calibration.data import CalibrationData, record_preactivations
from adacal.calibration.thresholds import fit_threshold
from adacal.calibration.weights import WeightCalibration
from adacal.snn.simulate import site_rates  # re-exported: the rates every step corrects from

__all__ = [
    "BiasCorrection",
    "CalibrationData",
    "PotentialCalibration",
    "WeightCalibration",
    "fit_threshold",
    "record_preactivations",
    "site_rates",
]
