"""`crucible certs secret`: the Secret a chart component mounts, from issued files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from crucible import certificates
from crucible.cli import main
from tests.chart.conftest import Render, find


def test_secret_holds_the_issued_files_under_the_keys_the_chart_mounts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], render: Render
) -> None:
    certificates.init_ca(tmp_path / "ca")
    certificates.issue(
        tmp_path / "ca", "plant_a", role="participant", out=tmp_path / "plant_a"
    )

    code = main(
        [
            "certs", "secret", "plant_a",
            "--dir", str(tmp_path / "ca"),
            "--out", str(tmp_path / "plant_a"),
            "--secret-name", "crucible-participant-tls",
            "--namespace", "crucible",
        ]
    )  # fmt: skip

    assert code == 0
    secret = yaml.safe_load(capsys.readouterr().out)
    assert secret["metadata"] == {
        "name": "crucible-participant-tls",
        "namespace": "crucible",
    }
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    assert data["ca.crt"] == (tmp_path / "ca" / "ca.crt").read_bytes()
    assert data["tls.key"] == (tmp_path / "plant_a" / "plant_a.key").read_bytes()
    identity = certificates.identity_of(data["tls.crt"])
    assert (identity.organization, identity.role) == ("plant_a", "participant")
    (deployment,) = find(render("member-a"), "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (source,) = volumes["tls"]["projected"]["sources"]
    assert source["secret"]["name"] == secret["metadata"]["name"]
    assert {item["key"] for item in source["secret"]["items"]} == set(data)


def test_secret_of_a_certificate_not_issued_names_the_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certificates.init_ca(tmp_path / "ca")

    code = main(
        [
            "certs",
            "secret",
            "plant_b",
            "--dir",
            str(tmp_path / "ca"),
            "--secret-name",
            "x",
        ]
    )

    assert code == 2
    error = capsys.readouterr().err
    assert "plant_b.crt" in error
    assert "crucible certs issue plant_b" in error
