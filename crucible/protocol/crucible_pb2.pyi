from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_KIND_UNSPECIFIED: _ClassVar[TaskKind]
    WAIT: _ClassVar[TaskKind]
    STATISTICS: _ClassVar[TaskKind]
    TRAIN: _ClassVar[TaskKind]
    EVALUATE: _ClassVar[TaskKind]
    DONE: _ClassVar[TaskKind]
    STOP: _ClassVar[TaskKind]
TASK_KIND_UNSPECIFIED: TaskKind
WAIT: TaskKind
STATISTICS: TaskKind
TRAIN: TaskKind
EVALUATE: TaskKind
DONE: TaskKind
STOP: TaskKind

class TensorInfo(_message.Message):
    __slots__ = ("name", "dtype", "shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("tensors", "total_bytes", "digest", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    tensors: _containers.RepeatedCompositeFieldContainer[TensorInfo]
    total_bytes: int
    digest: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, tensors: _Optional[_Iterable[_Union[TensorInfo, _Mapping]]] = ..., total_bytes: _Optional[int] = ..., digest: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FeatureTransform(_message.Message):
    __slots__ = ("column", "transform")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    column: str
    transform: str
    def __init__(self, column: _Optional[str] = ..., transform: _Optional[str] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("features", "target", "target_transform", "fill_default", "fill", "transforms", "dataset")
    class FillEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    FILL_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    FILL_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    target: str
    target_transform: str
    fill_default: str
    fill: _containers.ScalarMap[str, str]
    transforms: _containers.RepeatedCompositeFieldContainer[FeatureTransform]
    dataset: str
    def __init__(self, features: _Optional[_Iterable[str]] = ..., target: _Optional[str] = ..., target_transform: _Optional[str] = ..., fill_default: _Optional[str] = ..., fill: _Optional[_Mapping[str, str]] = ..., transforms: _Optional[_Iterable[_Union[FeatureTransform, _Mapping]]] = ..., dataset: _Optional[str] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("architecture", "hidden", "activation", "dropout")
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    hidden: _containers.RepeatedScalarFieldContainer[int]
    activation: str
    dropout: float
    def __init__(self, architecture: _Optional[str] = ..., hidden: _Optional[_Iterable[int]] = ..., activation: _Optional[str] = ..., dropout: _Optional[float] = ...) -> None: ...

class StrategySpec(_message.Message):
    __slots__ = ("name", "parameters")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    parameters: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., parameters: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RunSpec(_message.Message):
    __slots__ = ("task", "model", "participants", "min_participants", "rounds", "local_epochs", "batch_size", "learning_rate", "strategy", "grace_seconds", "round_timeout_seconds", "max_round_retries", "initial_model_run", "name", "seed", "weight_decay")
    TASK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    MIN_PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUND_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_MODEL_RUN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    task: TaskSpec
    model: ModelSpec
    participants: _containers.RepeatedScalarFieldContainer[str]
    min_participants: int
    rounds: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    strategy: StrategySpec
    grace_seconds: float
    round_timeout_seconds: float
    max_round_retries: int
    initial_model_run: str
    name: str
    seed: int
    weight_decay: float
    def __init__(self, task: _Optional[_Union[TaskSpec, _Mapping]] = ..., model: _Optional[_Union[ModelSpec, _Mapping]] = ..., participants: _Optional[_Iterable[str]] = ..., min_participants: _Optional[int] = ..., rounds: _Optional[int] = ..., local_epochs: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., strategy: _Optional[_Union[StrategySpec, _Mapping]] = ..., grace_seconds: _Optional[float] = ..., round_timeout_seconds: _Optional[float] = ..., max_round_retries: _Optional[int] = ..., initial_model_run: _Optional[str] = ..., name: _Optional[str] = ..., seed: _Optional[int] = ..., weight_decay: _Optional[float] = ...) -> None: ...

class OffersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunOffer(_message.Message):
    __slots__ = ("run_id", "name", "spec")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    spec: RunSpec
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ...) -> None: ...

class OffersReply(_message.Message):
    __slots__ = ("offers",)
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[RunOffer]
    def __init__(self, offers: _Optional[_Iterable[_Union[RunOffer, _Mapping]]] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("run_id", "accept", "refusal_reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    accept: bool
    refusal_reason: str
    def __init__(self, run_id: _Optional[str] = ..., accept: _Optional[bool] = ..., refusal_reason: _Optional[str] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class TaskRequest(_message.Message):
    __slots__ = ("run_id", "wait_seconds")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    wait_seconds: float
    def __init__(self, run_id: _Optional[str] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class Scaling(_message.Message):
    __slots__ = ("columns", "mean", "scale", "dropped")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    mean: _containers.RepeatedScalarFieldContainer[float]
    scale: _containers.RepeatedScalarFieldContainer[float]
    dropped: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., mean: _Optional[_Iterable[float]] = ..., scale: _Optional[_Iterable[float]] = ..., dropped: _Optional[_Iterable[str]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("kind", "run_id", "round", "attempt", "spec", "scaling", "model_digest", "proximal_mu", "message", "deadline_unix")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PROXIMAL_MU_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    kind: TaskKind
    run_id: str
    round: int
    attempt: int
    spec: RunSpec
    scaling: Scaling
    model_digest: str
    proximal_mu: float
    message: str
    deadline_unix: float
    def __init__(self, kind: _Optional[_Union[TaskKind, str]] = ..., run_id: _Optional[str] = ..., round: _Optional[int] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ..., scaling: _Optional[_Union[Scaling, _Mapping]] = ..., model_digest: _Optional[str] = ..., proximal_mu: _Optional[float] = ..., message: _Optional[str] = ..., deadline_unix: _Optional[float] = ...) -> None: ...

class ColumnStatistics(_message.Message):
    __slots__ = ("column", "count", "sum", "sum_squares")
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    SUM_SQUARES_FIELD_NUMBER: _ClassVar[int]
    column: str
    count: int
    sum: float
    sum_squares: float
    def __init__(self, column: _Optional[str] = ..., count: _Optional[int] = ..., sum: _Optional[float] = ..., sum_squares: _Optional[float] = ...) -> None: ...

class StatisticsReport(_message.Message):
    __slots__ = ("run_id", "rows", "columns")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[ColumnStatistics]
    def __init__(self, run_id: _Optional[str] = ..., rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[ColumnStatistics, _Mapping]]] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("run_id", "round")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("manifest", "data")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    manifest: Manifest
    data: bytes
    def __init__(self, manifest: _Optional[_Union[Manifest, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UpdateHeader(_message.Message):
    __slots__ = ("run_id", "round", "attempt", "samples", "metrics", "base_digest", "manifest")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    BASE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    attempt: int
    samples: int
    metrics: _containers.ScalarMap[str, float]
    base_digest: str
    manifest: Manifest
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., attempt: _Optional[int] = ..., samples: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., base_digest: _Optional[str] = ..., manifest: _Optional[_Union[Manifest, _Mapping]] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: UpdateHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[UpdateHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class UpdateReceipt(_message.Message):
    __slots__ = ("accepted", "reason", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class EvaluationReport(_message.Message):
    __slots__ = ("run_id", "round", "model_digest", "rows", "sum_squared_error", "sum_absolute_error", "sum_target", "sum_target_squares")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SUM_SQUARED_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUM_ABSOLUTE_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUM_TARGET_FIELD_NUMBER: _ClassVar[int]
    SUM_TARGET_SQUARES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    round: int
    model_digest: str
    rows: int
    sum_squared_error: float
    sum_absolute_error: float
    sum_target: float
    sum_target_squares: float
    def __init__(self, run_id: _Optional[str] = ..., round: _Optional[int] = ..., model_digest: _Optional[str] = ..., rows: _Optional[int] = ..., sum_squared_error: _Optional[float] = ..., sum_absolute_error: _Optional[float] = ..., sum_target: _Optional[float] = ..., sum_target_squares: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("run_id", "state", "round")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: str
    round: int
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[str] = ..., round: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("ok", "message")
    OK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    message: str
    def __init__(self, ok: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("key", "spec")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    key: str
    spec: RunSpec
    def __init__(self, key: _Optional[str] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class UpdateParticipantsRequest(_message.Message):
    __slots__ = ("run_id", "participants")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    participants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_id: _Optional[str] = ..., participants: _Optional[_Iterable[str]] = ...) -> None: ...

class ParticipantStatus(_message.Message):
    __slots__ = ("name", "state", "last_contact_unix", "message")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_UNIX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    last_contact_unix: float
    message: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., last_contact_unix: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class RoundMetrics(_message.Message):
    __slots__ = ("round", "train_loss", "eval_rmse", "eval_loss", "participants", "seconds", "attempts", "digest", "update_bytes")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    EVAL_RMSE_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    UPDATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    round: int
    train_loss: float
    eval_rmse: float
    eval_loss: float
    participants: int
    seconds: float
    attempts: int
    digest: str
    update_bytes: int
    def __init__(self, round: _Optional[int] = ..., train_loss: _Optional[float] = ..., eval_rmse: _Optional[float] = ..., eval_loss: _Optional[float] = ..., participants: _Optional[int] = ..., seconds: _Optional[float] = ..., attempts: _Optional[int] = ..., digest: _Optional[str] = ..., update_bytes: _Optional[int] = ...) -> None: ...

class RunStatus(_message.Message):
    __slots__ = ("run_id", "key", "name", "phase", "reason", "message", "current_round", "completed_rounds", "total_rounds", "participants", "rounds", "model_path", "model_digest", "started_unix", "finished_unix", "spec", "refused_updates", "revision")
    class RefusedUpdatesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REFUSED_UPDATES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    key: str
    name: str
    phase: str
    reason: str
    message: str
    current_round: int
    completed_rounds: int
    total_rounds: int
    participants: _containers.RepeatedCompositeFieldContainer[ParticipantStatus]
    rounds: _containers.RepeatedCompositeFieldContainer[RoundMetrics]
    model_path: str
    model_digest: str
    started_unix: float
    finished_unix: float
    spec: RunSpec
    refused_updates: _containers.ScalarMap[str, int]
    revision: int
    def __init__(self, run_id: _Optional[str] = ..., key: _Optional[str] = ..., name: _Optional[str] = ..., phase: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., current_round: _Optional[int] = ..., completed_rounds: _Optional[int] = ..., total_rounds: _Optional[int] = ..., participants: _Optional[_Iterable[_Union[ParticipantStatus, _Mapping]]] = ..., rounds: _Optional[_Iterable[_Union[RoundMetrics, _Mapping]]] = ..., model_path: _Optional[str] = ..., model_digest: _Optional[str] = ..., started_unix: _Optional[float] = ..., finished_unix: _Optional[float] = ..., spec: _Optional[_Union[RunSpec, _Mapping]] = ..., refused_updates: _Optional[_Mapping[str, int]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRunsReply(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunStatus]
    def __init__(self, runs: _Optional[_Iterable[_Union[RunStatus, _Mapping]]] = ...) -> None: ...
