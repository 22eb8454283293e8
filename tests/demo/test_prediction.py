"""crucible predict: hours and log10 hours from a model file; missing columns named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crucible import models
from crucible.data import prepare
from crucible.demo import baselines, prediction
from crucible.demo.organizations import Training
from crucible.errors import InputError
from crucible.spec import Model, Task
from crucible.tensors import payload_digest, write_atomic

pytestmark = pytest.mark.timeout(60)

TASK = Task.model_validate(
    {
        "features": ["Cr", "test_temp_C", "stress_MPa"],
        "target": "rupture_time_h",
        "targetTransform": "log10",
        "transforms": [{"column": "stress_MPa", "transform": "log10"}],
    }
)


def creep_rows(count: int = 40) -> pd.DataFrame:
    random = np.random.default_rng(1)
    stress = random.uniform(50, 300, count)
    temperature = random.uniform(550, 650, count)
    return pd.DataFrame(
        {
            "Cr": random.uniform(9, 12, count),
            "test_temp_C": temperature,
            "stress_MPa": stress,
            "rupture_time_h": 10 ** (12 - 3 * np.log10(stress) - temperature / 200),
        }
    )


def model_file(directory: Path) -> tuple[Path, baselines.FittedModel]:
    """A model file laid out as the aggregator writes its checkpoints."""
    training = Training(
        model=Model(hidden=[8], activation="tanh"), rounds=2, learning_rate=0.01
    )
    fitted = baselines.fit(
        [prepare(creep_rows(), TASK, source="t")], training, seed=models.seed_for(1)
    )
    scaling = fitted.scaling
    path = directory / "global.safetensors"
    write_atomic(
        path,
        fitted.weights,
        {
            "task": TASK.model_dump_json(by_alias=True),
            "model": fitted.model.model_dump_json(),
            "scaling": json.dumps(
                {
                    "columns": scaling.columns,
                    "mean": scaling.mean,
                    "scale": scaling.scale,
                    "dropped": scaling.dropped,
                }
            ),
            "order": json.dumps(list(fitted.weights)),
            "digest": payload_digest(fitted.weights),
        },
    )
    return path, fitted


def test_predictions_match_the_model_in_hours_and_log10(tmp_path: Path):
    path, fitted = model_file(tmp_path)
    rows = creep_rows(5).drop(columns="rupture_time_h")

    result = prediction.predict_table(prediction.load(path), rows, source="new.csv")

    expected = baselines.predict(
        fitted, prepare(rows.assign(rupture_time_h=1.0), TASK, source="x")
    )
    assert np.allclose(result["predicted_log10_rupture_time_h"], expected)
    assert np.allclose(result["predicted_rupture_time_h"], 10**expected)
    assert list(result.columns[:3]) == ["Cr", "test_temp_C", "stress_MPa"]


def test_a_missing_feature_column_is_refused_by_name(tmp_path: Path):
    path, _ = model_file(tmp_path)
    rows = creep_rows(3).drop(columns=["stress_MPa"])

    with pytest.raises(
        InputError, match=r"missing feature column\(s\) \['stress_MPa'\]"
    ):
        prediction.predict_table(prediction.load(path), rows, source="new.csv")


def test_a_file_without_metadata_is_refused(tmp_path: Path):
    path = tmp_path / "bare.safetensors"
    write_atomic(path, {"w": np.zeros(2, dtype=np.float32)})

    with pytest.raises(InputError, match="expected metadata"):
        prediction.load(path)


def test_predict_command_writes_a_csv(tmp_path: Path):
    path, _ = model_file(tmp_path)
    new = tmp_path / "new.csv"
    creep_rows(4).to_csv(new, index=False)
    output = tmp_path / "out.csv"

    code = prediction.predict_main(
        ["--model", str(path), "--input", str(new), "--output", str(output)]
    )

    assert code == 0
    written = pd.read_csv(output)
    assert len(written) == 4
    assert (written["predicted_rupture_time_h"] > 0).all()
