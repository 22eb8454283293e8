"""Named tensors on the wire and on disk, without pickle.

On the wire a set of tensors is a :class:`Manifest` (name, dtype, shape of each) followed
by their raw little-endian bytes in manifest order, cut into chunks so that a model of
any size passes gRPC's default 4 MiB message limit. On disk the same tensors are a
safetensors file. Both formats are plain data: reading them never runs code.

The receiving side checks a manifest against what it expects (names, dtypes, shapes)
before it reads a single data byte, and refuses a stream whose bytes do not add up.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from crucible.errors import InputError

CHUNK_BYTES = 1 << 20
METADATA_KEY = "crucible"
ALLOWED_DTYPES = frozenset({"float32", "float64", "float16", "int64", "int32"})

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        # Python integers: numpy's int64 product wraps, and a shape like
        # [2**32, 2**32] would then declare 0 bytes and pass the size check.
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def describe(weights: Weights) -> list[TensorInfo]:
    """The manifest entries of ``weights``, in their order."""
    return [
        TensorInfo(k, str(v.dtype), tuple(int(d) for d in v.shape))
        for k, v in weights.items()
    ]


def payload_digest(weights: Weights) -> str:
    """SHA-256 over names, dtypes, shapes and bytes: equal digests, equal tensors."""
    digest = hashlib.sha256()
    for info in sorted(describe(weights), key=lambda info: info.name):
        array = weights[info.name]
        digest.update(f"{info.name}|{info.dtype}|{list(info.shape)}\n".encode())
        digest.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")))
    return digest.hexdigest()


def iter_bytes(weights: Weights, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The raw bytes of ``weights`` in manifest order, in chunks of ``chunk_bytes``."""
    pending = bytearray()
    for array in weights.values():
        view = memoryview(np.ascontiguousarray(array).view(np.uint8).reshape(-1))
        while len(view):
            take = chunk_bytes - len(pending)
            pending += view[:take]
            view = view[take:]
            if len(pending) == chunk_bytes:
                yield bytes(pending)
                pending.clear()
    if pending:
        yield bytes(pending)


def check_manifest(
    found: list[TensorInfo],
    *,
    expected: list[TensorInfo] | None,
    max_bytes: int,
    source: str,
) -> None:
    """Refuse a manifest that is not what the receiver expects, before any data."""
    total = 0
    for info in found:
        if info.dtype not in ALLOWED_DTYPES:
            raise InputError(
                f"{source}: tensor {info.name!r} has dtype {info.dtype!r}; expected one of "
                f"{sorted(ALLOWED_DTYPES)}; the tensors are refused",
                reason="WrongDtype",
            )
        if any(d < 0 for d in info.shape):
            raise InputError(
                f"{source}: tensor {info.name!r} has a negative dimension {info.shape}",
                reason="WrongShape",
            )
        total += info.nbytes
    if total > max_bytes:
        raise InputError(
            f"{source}: tensors hold {total} bytes; at most {max_bytes} are accepted; "
            "the tensors are refused",
            reason="TooLarge",
        )
    if expected is None:
        return
    expected_by_name = {e.name: e for e in expected}
    found_names = [f.name for f in found]
    if sorted(found_names) != sorted(expected_by_name) or len(set(found_names)) != len(
        found_names
    ):
        raise InputError(
            f"{source}: tensors {sorted(found_names)} do not match the global model's "
            f"{sorted(expected_by_name)}; the update is refused",
            reason="WrongShape",
        )
    for info in found:
        want = expected_by_name[info.name]
        if info.shape != want.shape:
            raise InputError(
                f"{source}: tensor {info.name!r} has shape {list(info.shape)}; expected "
                f"{list(want.shape)}; the update is refused",
                reason="WrongShape",
            )
        if info.dtype != want.dtype:
            raise InputError(
                f"{source}: tensor {info.name!r} has dtype {info.dtype}; expected "
                f"{want.dtype}; the update is refused",
                reason="WrongDtype",
            )


class Assembler:
    """Collects streamed chunks into tensors, refusing more or fewer bytes than declared."""

    def __init__(self, manifest: list[TensorInfo], *, source: str) -> None:
        self.manifest = manifest
        self.source = source
        self.expected_bytes = sum(info.nbytes for info in manifest)
        # One buffer of the declared size, filled in place: growing a bytearray chunk
        # by chunk would copy it and briefly hold it twice.
        self.buffer = bytearray(self.expected_bytes)
        self.received = 0

    def add(self, data: bytes) -> None:
        end = self.received + len(data)
        if end > self.expected_bytes:
            raise InputError(
                f"{self.source}: stream holds more than the {self.expected_bytes} bytes its "
                "manifest declares; the tensors are refused",
                reason="Malformed",
            )
        self.buffer[self.received : end] = data
        self.received = end

    def finish(self) -> Weights:
        if self.received != self.expected_bytes:
            raise InputError(
                f"{self.source}: stream ended after {self.received} of "
                f"{self.expected_bytes} declared bytes; the tensors are refused",
                reason="Truncated",
            )
        weights: Weights = {}
        offset = 0
        for info in self.manifest:
            little_endian = np.dtype(info.dtype).newbyteorder("<")
            count = int(np.prod(info.shape, dtype=np.int64))
            array = np.frombuffer(self.buffer, little_endian, count, offset)
            weights[info.name] = array.reshape(info.shape).astype(
                info.dtype, copy=False
            )
            offset += info.nbytes
        return weights


def check_finite(weights: Weights, *, source: str) -> None:
    """Refuse tensors holding NaN or infinity."""
    for name, array in weights.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise InputError(
                f"{source}: tensor {name!r} holds {bad} NaN or infinite values; "
                "the update is refused",
                reason="NotFinite",
            )


SAFETENSORS_DTYPES = {
    "float32": "F32",
    "float64": "F64",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
}


def safetensors_bytes(
    weights: Weights, metadata: dict[str, str] | None = None
) -> bytes:
    """The safetensors encoding of ``weights``, byte-identical for equal input.

    Tensors are laid out in name order and the header is JSON with sorted keys, so the
    file's SHA-256 identifies the model (the reference writer orders its header by
    hash map and would not).
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    offset = 0
    blobs = []
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name])
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[str(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return len(encoded).to_bytes(8, "little") + encoded + b"".join(blobs)


def write_atomic(
    path: Path, weights: Weights, metadata: dict[str, str] | None = None
) -> str:
    """Write a safetensors file via temporary file, fsync and rename; return its sha256.

    A reader never sees a half-written file: either the old one or the new one.
    ``metadata`` is stored as one JSON entry with sorted keys, so equal tensors and
    metadata give byte-identical files (and equal digests).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = safetensors_bytes(weights, metadata)
    with open(temporary, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return hashlib.sha256(payload).hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def read_file(path: Path) -> Weights:
    """Tensors of a safetensors file, in the order they were written."""
    loaded = load_file(str(path))
    return dict(loaded)


def read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        stored = handle.metadata() or {}
    return json.loads(stored.get(METADATA_KEY, "{}"))


def concat_chunks(chunks: Iterable[bytes]) -> bytes:
    return b"".join(chunks)
