"""The Larson-Miller baseline: the engineer's classic master curve for rupture life.

Larson and Miller (Trans. ASME 74, 1952) observed that rupture life t_r (hours) at
absolute temperature T collapses onto one curve of stress through the parameter
LMP = T (C + log10 t_r). With the master curve written as a cubic in x = log10 stress,
LMP = a0 + a1 x + a2 x^2 + a3 x^3, the life follows as

    log10 t_r = -C + (a0 + a1 x + a2 x^2 + a3 x^3) / T

which is linear in C and a0..a3, so one least-squares solve fits it. The demo fits it on
the pooled training rows of a fold, as a consortium without federated learning would,
ignoring composition and heat treatment: the bar any learned model must clear.

Not done here: per-grade constants or the Orr-Sherby-Dorn and Manson-Haferd parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crucible.errors import InputError

KELVIN = 273.15
DEGREE = 3


@dataclass(frozen=True)
class LarsonMiller:
    """A fitted curve: the constant C and the master curve's coefficients a0..a3."""

    constant: float
    coefficients: tuple[float, ...]

    def predict(self, temperature_c: np.ndarray, stress_mpa: np.ndarray) -> np.ndarray:
        """log10 rupture hours at each temperature (deg C) and stress (MPa)."""
        return _design(temperature_c, stress_mpa) @ np.array(
            [-self.constant, *self.coefficients]
        )

    def parameter(
        self, temperature_c: np.ndarray, log10_hours: np.ndarray
    ) -> np.ndarray:
        """The Larson-Miller parameter T (C + log10 t_r) of tests."""
        return (np.asarray(temperature_c) + KELVIN) * (self.constant + log10_hours)


def _design(temperature_c: np.ndarray, stress_mpa: np.ndarray) -> np.ndarray:
    temperature = np.asarray(temperature_c, dtype=float) + KELVIN
    stress = np.asarray(stress_mpa, dtype=float)
    if np.any(stress <= 0) or np.any(temperature <= 0):
        raise InputError(
            "Larson-Miller: expected positive stress (MPa) and temperature above "
            "absolute zero, found otherwise"
        )
    x = np.log10(stress)
    powers = np.column_stack([x**k for k in range(DEGREE + 1)])
    return np.column_stack([np.ones_like(x), powers / temperature[:, None]])


def fit(
    temperature_c: np.ndarray, stress_mpa: np.ndarray, log10_hours: np.ndarray
) -> LarsonMiller:
    """Least-squares Larson-Miller curve through tests (deg C, MPa, log10 hours)."""
    design = _design(temperature_c, stress_mpa)
    if len(design) < design.shape[1]:
        raise InputError(
            f"Larson-Miller: expected at least {design.shape[1]} tests to fit, "
            f"found {len(design)}"
        )
    # Columns differ in scale by orders of magnitude (1 against x^3/T): solve scaled.
    norms = np.linalg.norm(design, axis=0)
    solution, *_ = np.linalg.lstsq(design / norms, np.asarray(log10_hours), rcond=None)
    solution = solution / norms
    return LarsonMiller(constant=float(-solution[0]), coefficients=tuple(solution[1:]))
