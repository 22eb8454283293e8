"""Named tensors on the wire and on disk, without pickle.

On the wire a set of tensors is a :class:`Manifest` (name, dtype, shape of each) followed
by their raw little-endian bytes in manifest order, cut into chunks so that a model of
any size passes gRPC's default 4 MiB message limit. On disk the same tensors are a
safetensors file. Both formats are plain data: reading them never runs code.

The receiving side checks a manifest against what it expects (names, dtypes, shapes)
before it reads a single data byte, and refuses a stream whose bytes do not add up.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from crucible.errors import InputError

# Tensors travel in chunks of this size, both ways. The aggregator's gRPC core keeps
# memory per participant that grows with the size of the messages it received: with
# 50 participants instead of 5, its heap held 45 MiB more between rounds with 1 MiB
# chunks and 14 MiB more with 256 KiB chunks. A 40 MB model is still only 160 messages.
CHUNK_BYTES = 256 << 10
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


def _longer_than_declared(source: str, expected: int) -> InputError:
    return InputError(
        f"{source}: stream holds more than the {expected} bytes its manifest declares; "
        "the tensors are refused",
        reason="Malformed",
    )


def _shorter_than_declared(source: str, received: int, expected: int) -> InputError:
    return InputError(
        f"{source}: stream ended after {received} of {expected} declared bytes; "
        "the tensors are refused",
        reason="Truncated",
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
            raise _longer_than_declared(self.source, self.expected_bytes)
        self.buffer[self.received : end] = data
        self.received = end

    def finish(self) -> Weights:
        if self.received != self.expected_bytes:
            raise _shorter_than_declared(
                self.source, self.received, self.expected_bytes
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


def safetensors_layout(
    manifest: list[TensorInfo], metadata: dict[str, str] | None = None
) -> tuple[bytes, dict[str, int]]:
    """The safetensors header for ``manifest`` and where each tensor's bytes start.

    Tensors are laid out in name order and the header is JSON with sorted keys, so
    equal tensors give byte-identical files and the file's SHA-256 identifies the model
    (the reference writer orders its header by hash map and would not). Offsets count
    from the start of the file.
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {METADATA_KEY: json.dumps(metadata, sort_keys=True)}
    offsets: dict[str, int] = {}
    offset = 0
    for info in sorted(manifest, key=lambda info: info.name):
        header[info.name] = {
            "dtype": SAFETENSORS_DTYPES[info.dtype],
            "shape": list(info.shape),
            "data_offsets": [offset, offset + info.nbytes],
        }
        offsets[info.name] = offset
        offset += info.nbytes
    encoded = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    prefix = len(encoded).to_bytes(8, "little") + encoded
    return prefix, {name: len(prefix) + start for name, start in offsets.items()}


def _temporary(path: Path) -> Path:
    # Hidden, and unique per process and thread: two writers never share one.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")


def _commit(temporary: Path, path: Path) -> None:
    """Rename a temporary file, already fsynced, over ``path`` and fsync the directory."""
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def write_atomic(
    path: Path, weights: Weights, metadata: dict[str, str] | None = None
) -> str:
    """Write a safetensors file via temporary file, fsync and rename; return its sha256.

    A reader never sees a half-written file: either the old one or the new one.
    ``metadata`` is stored as one JSON entry with sorted keys, so equal tensors and
    metadata give byte-identical files (and equal digests). Each tensor is written from
    its own memory: no copy of the whole file is built first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, _ = safetensors_layout(describe(weights), metadata)
    digest = hashlib.sha256(prefix)
    temporary = _temporary(path)
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with open(handle, "wb", closefd=False) as output:
            output.write(prefix)
            for name in sorted(weights):
                array = np.ascontiguousarray(weights[name])
                little = array.astype(array.dtype.newbyteorder("<"), copy=False)
                data = little.reshape(-1).view(np.uint8)
                output.write(data)
                digest.update(data)
        os.fsync(handle)
        _commit(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    finally:
        os.close(handle)
    return digest.hexdigest()


def _write_at(handle: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``: pwrite may write less than it was given."""
    while len(data):
        written = os.pwrite(handle, data, offset)
        data = data[written:]
        offset += written


@dataclass(frozen=True)
class _Span:
    """One tensor's bytes: where they fall in the stream and where in the file."""

    info: TensorInfo
    start: int
    end: int
    file_offset: int


class TensorFileWriter:
    """Streams tensors, as they arrive in manifest order, straight into a file on disk.

    The receiving side of an update holds one chunk at a time, not the tensors: each
    chunk is checked (no NaN or infinity in floating-point tensors) and written at its
    place in a safetensors file laid out as :func:`write_atomic` lays it out, so the
    two give byte-identical files for equal tensors. The file appears under ``path``
    only when :meth:`finish` found every declared byte and :meth:`commit` renamed it;
    otherwise the temporary file is removed when the writer is closed (use it as a
    context manager).
    """

    def __init__(self, path: Path, manifest: list[TensorInfo], *, source: str) -> None:
        self.path = path
        self.source = source
        prefix, offsets = safetensors_layout(manifest)
        self.spans: list[_Span] = []
        position = 0
        for info in manifest:
            self.spans.append(
                _Span(info, position, position + info.nbytes, offsets[info.name])
            )
            position += info.nbytes
        self.expected_bytes = position
        self.received = 0
        self._span = 0
        self._carry = b""  # the first bytes of an element cut by a chunk boundary
        self.finished = False
        path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = _temporary(path)
        self.handle = os.open(
            self.temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666
        )
        try:
            self._reserve(len(prefix) + self.expected_bytes)
            _write_at(self.handle, memoryview(prefix), 0)
        except BaseException:
            self.close()
            raise

    def _reserve(self, size: int) -> None:
        """Claim the file's blocks up front, so a full disk refuses before any data."""
        try:
            os.posix_fallocate(self.handle, 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            os.ftruncate(self.handle, size)

    def __enter__(self) -> TensorFileWriter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        if self.received + len(view) > self.expected_bytes:
            raise _longer_than_declared(self.source, self.expected_bytes)
        while len(view):
            while self.spans[self._span].end <= self.received:
                self._span += 1
            span = self.spans[self._span]
            piece = view[: span.end - self.received]
            within = self.received - span.start
            self._check_finite(span, piece, within)
            _write_at(self.handle, piece, span.file_offset + within)
            self.received += len(piece)
            view = view[len(piece) :]

    def _check_finite(self, span: _Span, piece: memoryview, within: int) -> None:
        dtype = np.dtype(span.info.dtype)
        if not np.issubdtype(dtype, np.floating):
            return
        size = dtype.itemsize
        whole = piece
        first = within // size  # index of the first whole element in ``piece``
        if self._carry:
            need = size - len(self._carry)
            if len(piece) < need:
                self._carry += bytes(piece)
                return
            self._refuse_if_not_finite(
                span, self._carry + bytes(piece[:need]), first, dtype
            )
            whole = piece[need:]
            first += 1
        cut = len(whole) - len(whole) % size
        self._carry = bytes(whole[cut:])
        self._refuse_if_not_finite(span, whole[:cut], first, dtype)

    def _refuse_if_not_finite(
        self, span: _Span, data: bytes | memoryview, first: int, dtype: np.dtype
    ) -> None:
        values = np.frombuffer(data, dtype.newbyteorder("<"))
        if np.isfinite(values).all():
            return
        index = first + int(np.argmin(np.isfinite(values)))
        raise InputError(
            f"{self.source}: tensor {span.info.name!r} holds a NaN or infinite value "
            f"(element {index} of {math.prod(span.info.shape)}); the update is refused",
            reason="NotFinite",
        )

    def finish(self) -> None:
        """Check that every declared byte arrived and make them durable (not yet visible)."""
        if self.received != self.expected_bytes:
            raise _shorter_than_declared(
                self.source, self.received, self.expected_bytes
            )
        os.fsync(self.handle)

    def commit(self) -> None:
        """Rename the finished file to ``path``: from here on it is the stored copy."""
        _commit(self.temporary, self.path)
        self.finished = True

    def close(self) -> None:
        if self.handle >= 0:
            os.close(self.handle)
            self.handle = -1
        if not self.finished:
            self.temporary.unlink(missing_ok=True)


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
