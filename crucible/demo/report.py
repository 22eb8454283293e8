"""The demo's report: accuracy of every model over the folds, as JSON and as Markdown.

Everything is computed from one table of held-out predictions: a row per test, with its
fold, organization, measured log10 rupture hours and one column per model
(``federated``, ``centralized``, ``larson_miller``, ``local:ORG``). For each model the
report gives ``"all"`` (all held-out rows of a fold together) and ``"by_organization"``
(each organization's own held-out rows): RMSE, MAE and R^2 on log10 hours, each the mean
over folds, and ``rmse_sd``, the standard deviation of the RMSE over folds.

Not here: significance tests. Five folds of grouped heats give a spread (``rmse_sd``),
not a confidence interval.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FEDERATED = "federated"
CENTRALIZED = "centralized"
LARSON_MILLER = "larson_miller"
LOCAL_PREFIX = "local:"


def local_column(organization: str) -> str:
    return f"{LOCAL_PREFIX}{organization}"


def errors(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R^2 of predictions against measurements."""
    residual = np.asarray(predicted, dtype=float) - np.asarray(measured, dtype=float)
    spread = float(np.sum((measured - np.mean(measured)) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "mae": float(np.mean(np.abs(residual))),
        "r2": float(1.0 - np.sum(residual**2) / spread) if spread > 0 else float("nan"),
    }


def over_folds(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean RMSE, MAE and R^2 over the folds present in ``frame``; sd of the RMSE."""
    per_fold = [
        errors(rows[column].to_numpy(), rows["measured"].to_numpy())
        for _, rows in frame.groupby("fold", sort=True)
    ]
    rmse = [f["rmse"] for f in per_fold]
    return {
        "rmse": float(np.mean(rmse)),
        "mae": float(np.mean([f["mae"] for f in per_fold])),
        "r2": float(np.nanmean([f["r2"] for f in per_fold])),
        "rmse_sd": float(np.std(rmse, ddof=1)) if len(rmse) > 1 else 0.0,
    }


def section(frame: pd.DataFrame, column: str, organizations: list[str]) -> dict:
    return {
        "all": over_folds(frame, column),
        "by_organization": {
            name: over_folds(frame[frame["organization"] == name], column)
            for name in organizations
        },
    }


def build(
    predictions: pd.DataFrame,
    *,
    organizations: list[str],
    rounds: list[dict],
    timings: dict,
    settings: dict,
    final_model: dict | None,
) -> dict:
    """The report as a JSON-ready mapping (see the module docstring for its layout)."""
    report = {
        FEDERATED: section(predictions, FEDERATED, organizations),
        "local": {
            name: section(predictions, local_column(name), organizations)
            for name in organizations
        },
        CENTRALIZED: section(predictions, CENTRALIZED, organizations),
        LARSON_MILLER: section(predictions, LARSON_MILLER, organizations),
    }
    report[FEDERATED]["rounds"] = rounds
    report["organizations"] = {
        name: {
            "rows": int((predictions["organization"] == name).sum()),
            "heats": int(
                predictions.loc[predictions["organization"] == name, "heat"].nunique()
            ),
        }
        for name in organizations
    }
    report["settings"] = settings
    report["timings"] = timings
    report["final_model"] = final_model
    return report


def change_sentence(name: str, federated: float, local: float) -> str:
    """One sentence on what federation changed for an organization on its own steels."""
    change = (federated - local) / local * 100 if local else 0.0
    if abs(change) < 2:
        verdict = "left the RMSE about where it was"
    elif change < 0:
        verdict = f"cut the RMSE by {-change:.0f}%"
    else:
        verdict = f"raised the RMSE by {change:.0f}%"
    return (
        f"**{name}**: on its own held-out heats, federation {verdict}, from "
        f"{local:.3f} with its local-only model to {federated:.3f} log10 h."
    )


def _row(label: str, metrics: dict) -> str:
    return (
        f"| {label} | {metrics['rmse']:.3f} | {metrics['rmse_sd']:.3f} | "
        f"{metrics['mae']:.3f} | {metrics['r2']:.3f} |"
    )


def markdown(report: dict) -> str:
    """The report as tables a person reads."""
    names = list(report["organizations"])
    settings = report["settings"]
    model = settings["model"]
    lines = [
        "# Crucible demo: federated against local-only and centralized models",
        "",
        "Creep rupture life (log10 hours) of 9-12Cr steels; "
        f"{len(names)} organizations; {settings['folds']} folds grouped by heat, the "
        "same for every model. Each number is the mean over folds; sd is the spread of "
        f"the RMSE over folds. Every learned model: MLP {model['hidden']} "
        f"({model['activation']}), {settings['epochs']} passes over each of its "
        f"training rows ({settings['rounds']} rounds x {settings['localEpochs']} local "
        "epochs for the federation).",
        "",
        "## All held-out rows",
        "",
        "| model | RMSE | sd | MAE | R^2 |",
        "|---|---|---|---|---|",
        _row("federated (the real services)", report[FEDERATED]["all"]),
        _row("centralized (all rows pooled)", report[CENTRALIZED]["all"]),
        _row("Larson-Miller (pooled fit)", report[LARSON_MILLER]["all"]),
    ]
    lines += [_row(f"local-only: {n}", report["local"][n]["all"]) for n in names]

    lines += [
        "",
        "## Each organization's own held-out rows (RMSE)",
        "",
        "| organization | rows | heats | federated | local-only | centralized "
        "| Larson-Miller |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        held = report["organizations"][name]
        lines.append(
            f"| {name} | {held['rows']} | {held['heats']} | "
            f"{report[FEDERATED]['by_organization'][name]['rmse']:.3f} | "
            f"{report['local'][name]['by_organization'][name]['rmse']:.3f} | "
            f"{report[CENTRALIZED]['by_organization'][name]['rmse']:.3f} | "
            f"{report[LARSON_MILLER]['by_organization'][name]['rmse']:.3f} |"
        )

    lines += ["", "## What federation changed for each organization", ""]
    lines += [
        "- "
        + change_sentence(
            name,
            report[FEDERATED]["by_organization"][name]["rmse"],
            report["local"][name]["by_organization"][name]["rmse"],
        )
        for name in names
    ]

    federated = report[FEDERATED]["all"]["rmse"]
    centralized = report[CENTRALIZED]["all"]["rmse"]
    best_local = min(report["local"][n]["all"]["rmse"] for n in names)
    lines += [
        "",
        "## In short",
        "",
        f"- Federated RMSE over all held-out rows: {federated:.3f}; best local-only "
        f"model: {best_local:.3f}; centralized: {centralized:.3f} "
        f"(federated / centralized = {federated / centralized:.3f}).",
        "",
        "## Rounds",
        "",
        "| fold | rounds | seconds | final train loss | final held-out RMSE |",
        "|---|---|---|---|---|",
    ]
    for fold in report[FEDERATED]["rounds"]:
        last = fold["rounds"][-1] if fold["rounds"] else {}
        held_out = (
            "none (trained on all rows)"
            if fold["fold"] == "final"
            else f"{last.get('eval_rmse', float('nan')):.3f}"
        )
        lines.append(
            f"| {fold['fold']} | {len(fold['rounds'])} | {fold['seconds']:.1f} | "
            f"{last.get('train_loss', float('nan')):.4f} | {held_out} |"
        )
    timings = report["timings"]
    lines += [
        "",
        "Train loss is the mean squared error on scaled targets; held-out RMSE is on "
        "log10 hours, as each participant measured it on its own held-out rows.",
        "",
        "## Timings",
        "",
        *(
            f"- {key.replace('_', ' ')}: {value:.1f} s"
            for key, value in timings.items()
        ),
    ]
    final = report.get("final_model")
    if final:
        lines += [
            "",
            "## Global model",
            "",
            f"`{final['path']}`: trained by the federation on every organization's "
            f"rows ({final['rounds']} rounds); tensor digest `{final['digest']}`, file "
            f"sha256 `{final['file_sha256']}`. Its metadata holds the task and the "
            f"scaling statistics; `crucible predict --model {final['path']} --input "
            "new.csv` uses it.",
        ]
    return "\n".join(lines) + "\n"


def write(report: dict, directory: Path) -> None:
    import json

    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / "report.md").write_text(markdown(report))
