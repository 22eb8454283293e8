"""The Larson-Miller fit recovers a known master curve and refuses impossible tests."""

from __future__ import annotations

import numpy as np
import pytest

from crucible.demo import larson_miller
from crucible.errors import InputError

pytestmark = pytest.mark.timeout(30)


def synthetic(constant: float, coefficients: tuple[float, ...], count: int = 60):
    random = np.random.default_rng(0)
    temperature = random.uniform(500, 700, count)
    stress = random.uniform(50, 400, count)
    x = np.log10(stress)
    master = sum(a * x**k for k, a in enumerate(coefficients))
    return temperature, stress, -constant + master / (temperature + 273.15)


def test_fit_recovers_the_constant_and_the_curve_of_exact_data():
    truth = (30.0, (36000.0, -2000.0, -1500.0, 0.0))
    temperature, stress, hours = synthetic(*truth)

    curve = larson_miller.fit(temperature, stress, hours)

    assert curve.constant == pytest.approx(30.0, rel=1e-6)
    assert np.allclose(curve.predict(temperature, stress), hours, atol=1e-6)


def test_parameter_is_constant_along_the_fitted_curve_at_one_stress():
    temperature, stress, hours = synthetic(25.0, (30000.0, -3000.0, 0.0, 0.0))
    curve = larson_miller.fit(temperature, stress, hours)

    at = np.array([550.0, 600.0, 650.0])
    life = curve.predict(at, np.full(3, 150.0))
    parameter = curve.parameter(at, life)

    assert np.allclose(parameter, parameter[0])


def test_fit_refuses_non_positive_stress():
    with pytest.raises(InputError, match="positive stress"):
        larson_miller.fit(np.full(6, 600.0), np.array([0, 1, 2, 3, 4, 5.0]), np.ones(6))


def test_fit_refuses_fewer_tests_than_unknowns():
    with pytest.raises(InputError, match="at least 5 tests"):
        larson_miller.fit(np.full(3, 600.0), np.full(3, 100.0), np.ones(3))
