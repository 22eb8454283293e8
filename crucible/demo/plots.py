"""The demo's figures: global loss per round, predicted against measured rupture life.

PNG files drawn with matplotlib's non-interactive backend, so they work without a
display. The figures show what the report's numbers summarize; they compute nothing
the report does not.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from crucible.demo.report import CENTRALIZED, FEDERATED, LARSON_MILLER


def loss_per_round(rounds: list[dict], path: Path) -> None:
    """Training loss and held-out RMSE of the global model per round; a line a fold."""
    figure, (train, held_out) = plt.subplots(1, 2, figsize=(10, 4))
    for fold in rounds:
        numbers = [r["round"] for r in fold["rounds"]]
        label = (
            f"fold {fold['fold']}" if fold["fold"] != "final" else "final (all rows)"
        )
        style = "--" if fold["fold"] == "final" else "-"
        train.plot(
            numbers, [r["train_loss"] for r in fold["rounds"]], style, label=label
        )
        if fold["fold"] != "final":
            held_out.plot(
                numbers, [r["eval_rmse"] for r in fold["rounds"]], label=label
            )
    train.set(
        xlabel="round",
        ylabel="training loss (MSE, scaled)",
        yscale="log",
        title="Global training loss",
    )
    held_out.set(
        xlabel="round", ylabel="RMSE (log10 h)", title="Global model on held-out heats"
    )
    train.legend(fontsize="small")
    held_out.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def predicted_against_measured(predictions: pd.DataFrame, path: Path) -> None:
    """Held-out predictions of the federated, centralized and Larson-Miller models."""
    columns = [
        (FEDERATED, "federated"),
        (CENTRALIZED, "centralized"),
        (LARSON_MILLER, "Larson-Miller"),
    ]
    figure, axes = plt.subplots(
        1, len(columns), figsize=(15, 5), sharex=True, sharey=True
    )
    low = float(np.floor(predictions["measured"].min()))
    high = float(np.ceil(predictions["measured"].max()))
    for axis, (column, title) in zip(axes, columns, strict=True):
        for name, rows in predictions.groupby("organization", sort=True):
            axis.scatter(rows["measured"], rows[column], s=8, alpha=0.6, label=name)
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        rmse = float(
            np.sqrt(np.mean((predictions[column] - predictions["measured"]) ** 2))
        )
        axis.set(
            title=f"{title} (RMSE of all rows pooled {rmse:.3f})",
            xlabel="measured log10 rupture hours",
            xlim=(low, high),
            ylim=(low, high),
        )
    axes[0].set_ylabel("predicted log10 rupture hours")
    axes[0].legend(fontsize="small", markerscale=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
