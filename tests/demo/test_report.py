"""The report: JSON layout, fold means and spreads, a sentence per organization."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crucible.demo import report

pytestmark = pytest.mark.timeout(30)

NAMES = ["mill", "forge"]


def predictions() -> pd.DataFrame:
    rows = []
    for fold in (1, 2):
        for name in NAMES:
            for index in range(4):
                measured = float(index + fold)
                rows.append(
                    {
                        "fold": fold,
                        "organization": name,
                        "heat": f"{name}-{fold}",
                        "measured": measured,
                        "federated": measured + 0.1 * fold,
                        "centralized": measured + 0.1,
                        "larson_miller": measured + 0.5,
                        "local:mill": measured + (0.2 if name == "mill" else 1.0),
                        "local:forge": measured + (0.2 if name == "forge" else 1.0),
                    }
                )
    return pd.DataFrame(rows)


def built() -> dict:
    return report.build(
        predictions(),
        organizations=NAMES,
        rounds=[
            {
                "fold": 1,
                "seconds": 1.0,
                "rounds": [{"round": 1, "train_loss": 0.5, "eval_rmse": 0.4}],
            }
        ],
        timings={"total_seconds": 3.0},
        settings={
            "folds": 2,
            "model": {"hidden": [8], "activation": "tanh"},
            "epochs": 4,
            "rounds": 2,
            "localEpochs": 2,
        },
        final_model=None,
    )


def test_errors_of_known_residuals():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    found = report.errors(measured + np.array([1.0, -1.0, 1.0, -1.0]), measured)

    assert found["rmse"] == pytest.approx(1.0)
    assert found["mae"] == pytest.approx(1.0)
    assert found["r2"] == pytest.approx(1 - 4 / 5)


def test_report_has_every_model_with_all_and_by_organization():
    result = built()

    assert result["federated"]["all"]["rmse"] == pytest.approx(0.15)
    assert result["federated"]["all"]["rmse_sd"] == pytest.approx(
        np.std([0.1, 0.2], ddof=1)
    )
    assert result["local"]["mill"]["all"]["rmse"] == pytest.approx(np.sqrt(0.52))
    assert result["local"]["mill"]["by_organization"]["mill"]["rmse"] == pytest.approx(
        0.2
    )
    for model in ("federated", "centralized", "larson_miller"):
        assert set(result[model]["by_organization"]) == set(NAMES)
        assert set(result[model]["all"]) == {"rmse", "mae", "r2", "rmse_sd"}
    assert result["federated"]["rounds"][0]["rounds"][0]["train_loss"] == 0.5
    assert result["organizations"]["forge"] == {"rows": 8, "heats": 2}


def test_markdown_says_for_each_organization_what_federation_changed():
    text = report.markdown(built())

    for name in NAMES:
        assert f"**{name}**: on its own held-out heats, federation cut the RMSE" in text
    assert "| federated (the real services) | 0.150 |" in text


def test_change_sentence_is_honest_about_a_worse_result():
    sentence = report.change_sentence("lab", federated=0.6, local=0.5)

    assert "raised the RMSE by 20%" in sentence
