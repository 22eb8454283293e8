"""The torch model every organization trains: a small MLP, its training and inference.

Weights cross the process boundary as numpy arrays (:data:`crucible.tensors.Weights`)
in the module's ``state_dict`` order. Training is seeded by run, round and participant,
so a resumed run reproduces the same updates.

Deliberately not here: GPUs (creep tables are small; CPU is the target) and model
families other than the MLP.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from crucible.spec import Model
from crucible.tensors import Weights

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def build(spec: Model, inputs: int) -> nn.Module:
    """An MLP with ``spec.hidden`` layers mapping ``inputs`` features to one output."""
    layers: list[nn.Module] = []
    width = inputs
    for hidden in spec.hidden:
        layers.append(nn.Linear(width, hidden))
        layers.append(ACTIVATIONS[spec.activation]())
        if spec.dropout:
            layers.append(nn.Dropout(spec.dropout))
        width = hidden
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def seed_for(*parts: object) -> int:
    """A stable 63-bit seed from any parts (run seed, round, participant ...)."""
    text = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def initial_weights(spec: Model, inputs: int, seed: int) -> Weights:
    torch.manual_seed(seed)
    return weights_of(build(spec, inputs))


def weights_of(module: nn.Module) -> Weights:
    return {
        k: v.detach().cpu().numpy().astype(np.float32, copy=True)
        for k, v in module.state_dict().items()
    }


def load_weights(module: nn.Module, weights: Weights) -> None:
    module.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()}
    )


@dataclass(frozen=True)
class TrainingResult:
    weights: Weights
    loss: float
    seconds: float
    samples: int


def train(
    spec: Model,
    weights: Weights,
    inputs: np.ndarray,
    target: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    seed: int,
    proximal_mu: float = 0.0,
) -> TrainingResult:
    """Train from ``weights`` for ``epochs`` on scaled data; mean squared error with Adam.

    With ``proximal_mu`` > 0 the loss adds (mu/2)·||w - w_global||², FedProx's proximal
    term (Li et al., 2020), which keeps local models near the global one.
    """
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    module = build(spec, inputs.shape[1])
    load_weights(module, weights)
    anchor = [p.detach().clone() for p in module.parameters()]
    optimizer = torch.optim.Adam(
        module.parameters(), lr=learning_rate, weight_decay=weight_decay
    )
    x = torch.from_numpy(inputs)
    y = torch.from_numpy(target).reshape(-1, 1)
    total, count = 0.0, 0
    module.train()
    for _ in range(epochs):
        total, count = 0.0, 0
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(module(x[batch]), y[batch])
            objective = loss
            if proximal_mu > 0:
                drift = sum(
                    ((p - a) ** 2).sum()
                    for p, a in zip(module.parameters(), anchor, strict=True)
                )
                objective = loss + proximal_mu / 2 * drift
            objective.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
    return TrainingResult(
        weights=weights_of(module),
        loss=total / max(count, 1),
        seconds=time.perf_counter() - started,
        samples=len(x),
    )


def predict(spec: Model, weights: Weights, inputs: np.ndarray) -> np.ndarray:
    """Scaled predictions of the model for scaled ``inputs``."""
    module = build(spec, inputs.shape[1])
    load_weights(module, weights)
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(inputs)).numpy().reshape(-1).astype(float)
