"""The aggregator's gRPC edge: authentication, authorization, and status codes.

Every call is checked here against the verified peer certificate: the Federation
service admits role ``participant`` (and, for PullModel, ``operator``), the Admin service
admits role ``operator`` only. The certificate must also still be valid and issued by
the CA file as it is now, so a rotated CA or an expired certificate cuts a peer off on
its next call, not its next connection. Refusals are logged and audited.

Errors from the core become gRPC status codes here and nowhere else: InputError ->
INVALID_ARGUMENT / PERMISSION_DENIED / NOT_FOUND / FAILED_PRECONDITION, TemporaryError
-> UNAVAILABLE, an untrusted certificate -> UNAUTHENTICATED. A handler's bug becomes
INTERNAL for that call; the service stays up.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import start_http_server

from crucible.certificates import Identity
from crucible.errors import CrucibleError, InputError, TemporaryError
from crucible.protocol import pb, rpc
from crucible.settings import AggregatorSettings
from crucible.telemetry import logger
from crucible.tensors import describe, iter_bytes
from crucible.transport import (
    PeerCheck,
    keepalive_options,
    peer_identity,
    server_credentials,
)
from services.aggregator.memory import limit_malloc_arenas
from services.aggregator.runs import Coordinator, Run
from services.aggregator.store import Store

log = logger("aggregator")

# Updates are received this many at a time. Each one in flight holds a chunk or two
# (its bytes go straight to disk), and the others wait on their streams with their
# transport windows full, so memory stays flat however many participants send at once.
UPDATES_AT_ONCE = 4
RECEIVING = threading.BoundedSemaphore(UPDATES_AT_ONCE)
# An upload waits this long for a receiving slot before it is answered UNAVAILABLE
# (participants then retry with backoff); only its header has been read by then.
SLOT_WAIT_SECONDS = 120.0

CODES = {
    "NotParticipant": grpc.StatusCode.PERMISSION_DENIED,
    "NotFound": grpc.StatusCode.NOT_FOUND,
    "StaleRound": grpc.StatusCode.FAILED_PRECONDITION,
}


def _abort(context: grpc.ServicerContext, error: CrucibleError) -> None:
    if isinstance(error, TemporaryError):
        code = grpc.StatusCode.UNAVAILABLE
    else:
        code = CODES.get(error.reason, grpc.StatusCode.INVALID_ARGUMENT)
    context.abort(code, f"{error.reason}: {error}")


def guarded(*roles: str) -> Callable:
    """Check the caller's role, pass its identity, translate errors at the edge."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            identity = peer_identity(context)
            if identity is None or identity.role not in roles:
                found = (
                    f"{identity.organization} ({identity.role})" if identity else "none"
                )
                log.warning(
                    "call_refused",
                    method=method.__name__,
                    caller=found,
                    why="role not allowed",
                )
                self.coordinator.store.audit(
                    actor=found, action="call_refused", method=method.__name__
                )
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{method.__name__} needs a certificate with role {' or '.join(roles)}; "
                    f"found {found}",
                )
            problem = self.trust.problem(context) if self.trust else None
            if problem is not None:
                log.warning(
                    "call_refused",
                    method=method.__name__,
                    caller=f"{identity.organization} ({identity.role})",
                    why=problem,
                )
                self.coordinator.store.audit(
                    actor=identity.organization,
                    action="call_refused",
                    method=method.__name__,
                    why=problem,
                )
                context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{method.__name__}: {problem}; renew the certificate from the "
                    "federation's current CA",
                )
            try:
                return method(self, request, context, identity)
            except CrucibleError as error:
                if error.reason == "NotParticipant":
                    self.coordinator.store.audit(
                        actor=identity.organization,
                        action="call_refused",
                        method=method.__name__,
                        why=str(error),
                    )
                _abort(context, error)
            except grpc.RpcError:
                raise
            except Exception:
                if context.code() is not None:  # already aborted by the handler
                    raise
                log.exception(
                    "handler_failed",
                    method=method.__name__,
                    caller=identity.organization,
                    next="the call fails with INTERNAL; the service stays up",
                )
                context.abort(grpc.StatusCode.INTERNAL, "internal error; see the logs")

        return wrapper

    return decorate


def status_of(coordinator: Coordinator, run: Run) -> pb.RunStatus:
    """The run's public status, including every round's metrics."""
    rounds = [
        pb.RoundMetrics(
            round=r["round"],
            train_loss=r["train_loss"] or 0.0,
            eval_rmse=r["eval_rmse"] or 0.0,
            eval_loss=r["eval_loss"] or 0.0,
            participants=r["participants"],
            seconds=r["seconds"],
            attempts=r["attempts"],
            digest=r["digest"],
            update_bytes=r["update_bytes"],
        )
        for r in coordinator.store.query(
            "SELECT * FROM rounds WHERE run_id=? ORDER BY round", run.id
        )
    ]
    refusals = {
        r["reason"]: r["count"]
        for r in coordinator.store.query(
            "SELECT * FROM refusals WHERE run_id=?", run.id
        )
    }
    return pb.RunStatus(
        run_id=run.id,
        key=run.key,
        name=run.spec.name,
        phase=run.phase,
        reason=run.reason,
        message=run.message,
        current_round=run.current_round,
        completed_rounds=run.completed_rounds,
        total_rounds=run.spec.rounds,
        participants=[
            pb.ParticipantStatus(
                name=p.name,
                state=p.state,
                last_contact_unix=p.last_contact,
                message=p.message,
            )
            for p in run.participants.values()
        ],
        rounds=rounds,
        model_path=run.model_path,
        model_digest=run.model_digest,
        started_unix=run.started,
        finished_unix=run.finished,
        spec=run.spec_message,
        refused_updates=refusals,
        revision=run.revision,
    )


class FederationServicer(rpc.FederationServicer):
    """What participants call: offers, joining, tasks, statistics, models, updates."""

    def __init__(
        self, coordinator: Coordinator, trust: PeerCheck | None = None
    ) -> None:
        self.coordinator = coordinator
        self.trust = trust
        # (run, organization) of the uploads in flight: one each, so that no
        # participant can take more than one of the receiving slots for a run.
        self._uploading: set[tuple[str, str]] = set()
        self._uploading_lock = threading.Lock()

    @guarded("participant")
    def ListOffers(self, request, context, identity: Identity):  # noqa: N802
        return pb.OffersReply(
            offers=[
                pb.RunOffer(run_id=run.id, name=run.spec.name, spec=run.spec_message)
                for run in self.coordinator.offers(identity.organization)
            ]
        )

    @guarded("participant")
    def Join(self, request, context, identity: Identity):  # noqa: N802
        run = self.coordinator.join(
            request.run_id,
            identity.organization,
            accept=request.accept,
            reason=request.refusal_reason,
        )
        return pb.JoinReply(run_id=run.id)

    @guarded("participant")
    def GetTask(self, request, context, identity: Identity):  # noqa: N802
        return self.coordinator.next_task(
            request.run_id,
            identity.organization,
            min(request.wait_seconds, self.long_poll),
        )

    @guarded("participant")
    def ReportStatistics(self, request, context, identity: Identity):  # noqa: N802
        self.coordinator.report_statistics(request, identity.organization)
        return pb.Ack(ok=True)

    @guarded("participant")
    def ReportEvaluation(self, request, context, identity: Identity):  # noqa: N802
        self.coordinator.report_evaluation(request, identity.organization)
        return pb.Ack(ok=True)

    @guarded("participant")
    def Heartbeat(self, request, context, identity: Identity):  # noqa: N802
        self.coordinator.heartbeat(request.run_id, identity.organization)
        return pb.Ack(ok=True)

    @guarded("participant")
    def FetchModel(self, request, context, identity: Identity):  # noqa: N802
        self.coordinator.member(request.run_id, identity.organization)
        return self._send(request)

    @guarded("participant", "operator")
    def PullModel(self, request, context, identity: Identity):  # noqa: N802
        if identity.role == "participant":
            self.coordinator.member(request.run_id, identity.organization)
        self.coordinator.store.audit(
            actor=identity.organization, action="model_pulled", run_id=request.run_id
        )
        return self._send(request)

    def _send(self, request: pb.ModelRequest) -> Iterator[pb.ModelChunk]:
        from services.aggregator import metrics

        weights, digest, metadata = self.coordinator.model_for(
            request.run_id, request.round
        )
        manifest = pb.Manifest(
            tensors=[
                pb.TensorInfo(name=i.name, dtype=i.dtype, shape=i.shape)
                for i in describe(weights)
            ],
            total_bytes=sum(i.nbytes for i in describe(weights)),
            digest=digest,
            metadata=metadata,
        )

        def stream() -> Iterator[pb.ModelChunk]:
            yield pb.ModelChunk(manifest=manifest)
            for data in iter_bytes(weights):
                metrics.MODEL_BYTES_SENT.inc(len(data))
                yield pb.ModelChunk(data=data)

        return stream()

    def SendUpdate(self, request_iterator, context):  # noqa: N802
        return self._receive(request_iterator, context)

    @guarded("participant")
    def _receive(self, request_iterator, context, identity: Identity):
        first = next(request_iterator, None)
        run = None
        try:
            if first is None or first.WhichOneof("part") != "header":
                raise InputError(
                    "update stream must start with a header", reason="Malformed"
                )
            header = first.header
            run = self.coordinator.runs.get(header.run_id)

            source = f"update from {identity.organization} for round {header.round}"

            def data() -> Iterator[bytes]:
                for chunk in request_iterator:
                    part = chunk.WhichOneof("part")
                    if part != "data":
                        found = "a second header" if part else "an empty message"
                        raise InputError(
                            f"{source}: {found} after the header; only data may follow "
                            "it; the update is refused",
                            reason="Malformed",
                        )
                    yield chunk.data

            uploader = (header.run_id, identity.organization)
            with self._one_upload(uploader, source), self._slot(source):
                self.coordinator.receive_update(header, data(), identity.organization)
            return pb.UpdateReceipt(accepted=True)
        except CrucibleError as error:
            self.coordinator.refuse(run, identity.organization, error)
            if isinstance(error, TemporaryError) or error.reason == "NotParticipant":
                raise
            return pb.UpdateReceipt(
                accepted=False, reason=error.reason, message=str(error)
            )

    @contextlib.contextmanager
    def _one_upload(self, uploader: tuple[str, str], source: str) -> Iterator[None]:
        with self._uploading_lock:
            if uploader in self._uploading:
                raise TemporaryError(
                    f"{source}: another upload from {uploader[1]} to run {uploader[0]} "
                    "is still in progress; send again once it has ended",
                    reason="UploadInProgress",
                )
            self._uploading.add(uploader)
        try:
            yield
        finally:
            with self._uploading_lock:
                self._uploading.discard(uploader)

    @staticmethod
    @contextlib.contextmanager
    def _slot(source: str) -> Iterator[None]:
        if not RECEIVING.acquire(timeout=SLOT_WAIT_SECONDS):
            raise TemporaryError(
                f"{source}: all {UPDATES_AT_ONCE} receiving slots stayed busy with other "
                f"uploads for {SLOT_WAIT_SECONDS:.0f} s; send again later",
                reason="Busy",
            )
        try:
            yield
        finally:
            RECEIVING.release()


class AdminServicer(rpc.AdminServicer):
    """What the operator and people with an operator certificate call."""

    def __init__(
        self, coordinator: Coordinator, trust: PeerCheck | None = None
    ) -> None:
        self.coordinator = coordinator
        self.trust = trust

    @guarded("operator")
    def StartRun(self, request, context, identity: Identity):  # noqa: N802
        run = self.coordinator.start_run(
            request.key, request.spec, actor=identity.organization
        )
        return status_of(self.coordinator, run)

    @guarded("operator")
    def GetRun(self, request, context, identity: Identity):  # noqa: N802
        return status_of(self.coordinator, self.coordinator.get(request.run_id))

    @guarded("operator")
    def ListRuns(self, request, context, identity: Identity):  # noqa: N802
        return pb.ListRunsReply(
            runs=[
                status_of(self.coordinator, r) for r in self.coordinator.runs.values()
            ]
        )

    @guarded("operator")
    def CancelRun(self, request, context, identity: Identity):  # noqa: N802
        run = self.coordinator.cancel(request.run_id, actor=identity.organization)
        return status_of(self.coordinator, run)

    @guarded("operator")
    def UpdateParticipants(self, request, context, identity: Identity):  # noqa: N802
        run = self.coordinator.update_participants(
            request.run_id, list(request.participants), actor=identity.organization
        )
        return status_of(self.coordinator, run)

    @guarded("operator")
    def WatchRun(self, request, context, identity: Identity):  # noqa: N802
        run = self.coordinator.get(request.run_id)
        return self._watch(run, context)

    def _watch(self, run: Run, context: grpc.ServicerContext) -> Iterator[pb.RunStatus]:
        condition = self.coordinator.condition
        sent = -1
        while context.is_active():
            with condition:
                if run.revision == sent:
                    condition.wait(timeout=5.0)
                if run.revision == sent:
                    continue
                sent = run.revision
                status = status_of(self.coordinator, run)
            yield status
            if run.terminal:
                return


def build_server(settings: AggregatorSettings, coordinator: Coordinator) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="grpc"
        ),
        # Without BDP probing each stream's receive window stays at 64 KiB, so updates
        # waiting for a receiving slot buffer little in the transport.
        options=[
            *keepalive_options(settings.keepalive_seconds),
            ("grpc.http2.bdp_probe", 0),
        ],
        maximum_concurrent_rpcs=settings.workers - 4,
    )
    files = settings.tls.files()
    trust = PeerCheck(files.ca)
    federation = FederationServicer(coordinator, trust)
    federation.long_poll = settings.long_poll_seconds
    rpc.add_FederationServicer_to_server(federation, server)
    rpc.add_AdminServicer_to_server(AdminServicer(coordinator, trust), server)
    health_servicer = health.HealthServicer()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_secure_port(settings.listen, server_credentials(files))
    return server


def serve(settings: AggregatorSettings) -> None:
    """Run the aggregator until SIGTERM or SIGINT; resume unfinished runs first."""
    limit_malloc_arenas()
    store = Store(settings.state_dir)
    coordinator = Coordinator(
        store,
        max_update_bytes=settings.max_update_bytes,
        lost_after_seconds=settings.lost_after_seconds,
        min_free_bytes=settings.min_free_bytes,
    )
    coordinator.resume()
    host, _, port = settings.metrics_listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    server = build_server(settings, coordinator)
    server.start()
    log.info(
        "aggregator_started",
        listen=settings.listen,
        metrics=settings.metrics_listen,
        state_dir=str(settings.state_dir),
        runs=len(coordinator.runs),
    )

    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    log.info("aggregator_stopping")
    server.stop(grace=5).wait()
    coordinator.close()
    time.sleep(0)
