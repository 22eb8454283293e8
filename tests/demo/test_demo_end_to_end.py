"""A small demo end to end: the real services, a report, plots and a usable model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crucible.demo import DATA

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_one_fold_demo_writes_the_report_plots_and_a_model_predict_can_use(
    tmp_path: Path,
):
    output = tmp_path / "demo"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CRUCIBLE_")}

    demo = subprocess.run(
        [
            sys.executable,
            "-m",
            "crucible.cli",
            "demo",
            "--output",
            str(output),
            "--max-folds",
            "1",
            "--rounds",
            "2",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "fold 1/1 federated: done" in demo.stdout
    report = json.loads((output / "report.json").read_text())
    names = list(report["organizations"])
    assert len(names) >= 4
    assert report["federated"]["all"]["rmse"] > 0
    assert set(report["local"]) == set(names)
    for name in names:
        assert report["local"][name]["all"]["rmse"] > 0
        assert set(report["federated"]["by_organization"]) == set(names)
    assert report["centralized"]["all"]["rmse"] > 0
    assert report["larson_miller"]["all"]["rmse"] > 0
    assert [r["round"] for r in report["federated"]["rounds"][0]["rounds"]] == [1, 2]
    for figure in ("loss_per_round.png", "predicted_vs_measured.png"):
        assert (output / figure).stat().st_size > 1000
    assert "What federation changed" in (output / "report.md").read_text()
    model = output / "global-model.safetensors"
    assert report["final_model"]["digest"]

    new = tmp_path / "new.csv"
    pd.read_csv(DATA / "netl_9cr_creep_rupture.csv").head(3).drop(
        columns=["rupture_time_h", "log10_rupture_time_h"]
    ).to_csv(new, index=False)
    predicted = subprocess.run(
        [
            sys.executable,
            "-m",
            "crucible.cli",
            "predict",
            "--model",
            str(model),
            "--input",
            str(new),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert "predicted_rupture_time_h" in predicted.stdout.splitlines()[0]

    bad = tmp_path / "bad.csv"
    pd.read_csv(new).drop(columns=["stress_MPa"]).to_csv(bad, index=False)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "crucible.cli",
            "predict",
            "--model",
            str(model),
            "--input",
            str(bad),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "stress_MPa" in refused.stderr
