"""Clients of the aggregator's Admin service and model download, for the operator,
the command line and the demo. Every call runs over mutual TLS with the caller's
certificate; the aggregator decides from that certificate what the caller may do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc

from crucible import spec as specs
from crucible.errors import InputError, TemporaryError
from crucible.protocol import pb, rpc
from crucible.tensors import (
    Assembler,
    TensorInfo,
    Weights,
    check_manifest,
    write_atomic,
)
from crucible.transport import TlsFiles, channel

PERMANENT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}


def translate(error: grpc.RpcError, *, what: str) -> Exception:
    """An InputError (fix and retry) or TemporaryError (retry later) for a gRPC error."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    message = f"{what}: {code.name}: {details}"
    if code in PERMANENT_CODES:
        result: Exception = InputError(
            message, reason=code.name.title().replace("_", "")
        )
    else:
        result = TemporaryError(message, reason="AggregatorUnavailable")
    result.__cause__ = error
    return result


class AdminClient:
    """Start, read, watch and cancel runs on an aggregator (operator certificate)."""

    def __init__(
        self,
        address: str,
        files: TlsFiles,
        *,
        server_name: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.address = address
        self.timeout = timeout_seconds
        self._channel = channel(address, files, server_name=server_name)
        self._stub = rpc.AdminStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start_run(self, key: str, spec: specs.RunSpec | pb.RunSpec) -> pb.RunStatus:
        """Start the run keyed by ``key``; the same key again returns the same run."""
        message = spec if isinstance(spec, pb.RunSpec) else specs.to_proto(spec)
        try:
            return self._stub.StartRun(
                pb.StartRunRequest(key=key, spec=message), timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error, what=f"start run {key}") from error

    def get_run(self, run_id: str) -> pb.RunStatus:
        try:
            return self._stub.GetRun(pb.RunRequest(run_id=run_id), timeout=self.timeout)
        except grpc.RpcError as error:
            raise translate(error, what=f"get run {run_id}") from error

    def list_runs(self) -> list[pb.RunStatus]:
        try:
            return list(
                self._stub.ListRuns(pb.ListRunsRequest(), timeout=self.timeout).runs
            )
        except grpc.RpcError as error:
            raise translate(error, what="list runs") from error

    def watch_run(
        self, run_id: str, *, timeout: float | None = None
    ) -> Iterator[pb.RunStatus]:
        """Status messages of a run as it changes; ends after a terminal phase."""
        try:
            yield from self._stub.WatchRun(
                pb.RunRequest(run_id=run_id), timeout=timeout
            )
        except grpc.RpcError as error:
            raise translate(error, what=f"watch run {run_id}") from error

    def cancel_run(self, run_id: str) -> pb.RunStatus:
        try:
            return self._stub.CancelRun(
                pb.RunRequest(run_id=run_id), timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise translate(error, what=f"cancel run {run_id}") from error

    def update_participants(self, run_id: str, participants: list[str]) -> pb.RunStatus:
        try:
            return self._stub.UpdateParticipants(
                pb.UpdateParticipantsRequest(run_id=run_id, participants=participants),
                timeout=self.timeout,
            )
        except grpc.RpcError as error:
            raise translate(
                error, what=f"update participants of run {run_id}"
            ) from error


def manifest_of(message: pb.Manifest) -> list[TensorInfo]:
    return [TensorInfo(t.name, t.dtype, tuple(t.shape)) for t in message.tensors]


def receive_tensors(
    chunks: Iterator[pb.ModelChunk], *, source: str, max_bytes: int = 8 << 30
) -> tuple[Weights, str]:
    """Tensors and declared digest from a ModelChunk stream (manifest first)."""
    first = next(chunks, None)
    if first is None or first.WhichOneof("part") != "manifest":
        raise InputError(f"{source}: stream did not start with a manifest")
    manifest = manifest_of(first.manifest)
    check_manifest(manifest, expected=None, max_bytes=max_bytes, source=source)
    assembler = Assembler(manifest, source=source)
    for chunk in chunks:
        assembler.add(chunk.data)
    return assembler.finish(), first.manifest.digest


def pull_model(
    address: str,
    files: TlsFiles,
    run_id: str,
    output: Path,
    *,
    server_name: str | None = None,
    round_number: int = 0,
) -> str:
    """Download a run's global model (participant certificate) into ``output``.

    Returns the digest of the tensors, checked against the one the aggregator declared.
    """
    from crucible.tensors import payload_digest

    with channel(address, files, server_name=server_name) as connection:
        stub = rpc.FederationStub(connection)
        try:
            stream = stub.PullModel(pb.ModelRequest(run_id=run_id, round=round_number))
            weights, declared = receive_tensors(stream, source=f"model of run {run_id}")
        except grpc.RpcError as error:
            raise translate(error, what=f"pull model of run {run_id}") from error
    digest = payload_digest(weights)
    if declared and declared != digest:
        raise TemporaryError(
            f"model of run {run_id}: digest {digest} differs from declared {declared}; "
            "nothing was written, pull again"
        )
    write_atomic(output, weights, {"digest": digest, "run_id": run_id})
    return digest
