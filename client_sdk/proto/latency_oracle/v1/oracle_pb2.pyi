import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeviceQuality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEVICE_QUALITY_UNSPECIFIED: _ClassVar[DeviceQuality]
    QUALITY_GOOD: _ClassVar[DeviceQuality]
    QUALITY_LOW: _ClassVar[DeviceQuality]
DEVICE_QUALITY_UNSPECIFIED: DeviceQuality
QUALITY_GOOD: DeviceQuality
QUALITY_LOW: DeviceQuality

class ListSearchSpacesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SearchSpace(_message.Message):
    __slots__ = ("name", "description", "num_genes", "cardinalities", "gene_names", "num_architectures", "space_size", "table_devices", "accuracy_metrics", "example_arch", "definition", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NUM_GENES_FIELD_NUMBER: _ClassVar[int]
    CARDINALITIES_FIELD_NUMBER: _ClassVar[int]
    GENE_NAMES_FIELD_NUMBER: _ClassVar[int]
    NUM_ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    SPACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TABLE_DEVICES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_METRICS_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_ARCH_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    num_genes: int
    cardinalities: _containers.RepeatedScalarFieldContainer[int]
    gene_names: _containers.RepeatedScalarFieldContainer[str]
    num_architectures: int
    space_size: str
    table_devices: _containers.RepeatedScalarFieldContainer[str]
    accuracy_metrics: _containers.RepeatedScalarFieldContainer[str]
    example_arch: str
    definition: str
    owner: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., num_genes: _Optional[int] = ..., cardinalities: _Optional[_Iterable[int]] = ..., gene_names: _Optional[_Iterable[str]] = ..., num_architectures: _Optional[int] = ..., space_size: _Optional[str] = ..., table_devices: _Optional[_Iterable[str]] = ..., accuracy_metrics: _Optional[_Iterable[str]] = ..., example_arch: _Optional[str] = ..., definition: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class RegisterSpaceRequest(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: str
    def __init__(self, definition: _Optional[str] = ...) -> None: ...

class GetSearchSpaceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListSearchSpacesResponse(_message.Message):
    __slots__ = ("spaces",)
    SPACES_FIELD_NUMBER: _ClassVar[int]
    spaces: _containers.RepeatedCompositeFieldContainer[SearchSpace]
    def __init__(self, spaces: _Optional[_Iterable[_Union[SearchSpace, _Mapping]]] = ...) -> None: ...

class Architectures(_message.Message):
    __slots__ = ("packed", "strings")
    PACKED_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    packed: PackedGenes
    strings: ArchStrings
    def __init__(self, packed: _Optional[_Union[PackedGenes, _Mapping]] = ..., strings: _Optional[_Union[ArchStrings, _Mapping]] = ...) -> None: ...

class PackedGenes(_message.Message):
    __slots__ = ("num_genes", "genes")
    NUM_GENES_FIELD_NUMBER: _ClassVar[int]
    GENES_FIELD_NUMBER: _ClassVar[int]
    num_genes: int
    genes: bytes
    def __init__(self, num_genes: _Optional[int] = ..., genes: _Optional[bytes] = ...) -> None: ...

class ArchStrings(_message.Message):
    __slots__ = ("archs",)
    ARCHS_FIELD_NUMBER: _ClassVar[int]
    archs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, archs: _Optional[_Iterable[str]] = ...) -> None: ...

class DeviceContract(_message.Message):
    __slots__ = ("unit", "batch_size", "input_resolution", "threads", "runtime", "runtime_version", "precision", "hardware", "notes")
    UNIT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    INPUT_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    unit: str
    batch_size: int
    input_resolution: int
    threads: int
    runtime: str
    runtime_version: str
    precision: str
    hardware: str
    notes: str
    def __init__(self, unit: _Optional[str] = ..., batch_size: _Optional[int] = ..., input_resolution: _Optional[int] = ..., threads: _Optional[int] = ..., runtime: _Optional[str] = ..., runtime_version: _Optional[str] = ..., precision: _Optional[str] = ..., hardware: _Optional[str] = ..., notes: _Optional[str] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "space", "full_name", "source", "head_kind", "num_samples", "expected_spearman", "monotonicity", "contract", "created_at", "updated_at", "head_fit_ms", "quality", "flops_spearman", "advised_samples", "warnings", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    FULL_NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    MONOTONICITY_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIT_MS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    FLOPS_SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    ADVISED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    full_name: str
    source: str
    head_kind: str
    num_samples: int
    expected_spearman: float
    monotonicity: float
    contract: DeviceContract
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    head_fit_ms: float
    quality: DeviceQuality
    flops_spearman: float
    advised_samples: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., full_name: _Optional[str] = ..., source: _Optional[str] = ..., head_kind: _Optional[str] = ..., num_samples: _Optional[int] = ..., expected_spearman: _Optional[float] = ..., monotonicity: _Optional[float] = ..., contract: _Optional[_Union[DeviceContract, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., head_fit_ms: _Optional[float] = ..., quality: _Optional[_Union[DeviceQuality, str]] = ..., flops_spearman: _Optional[float] = ..., advised_samples: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("space",)
    SPACE_FIELD_NUMBER: _ClassVar[int]
    space: str
    def __init__(self, space: _Optional[str] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class GetDeviceRequest(_message.Message):
    __slots__ = ("name", "space")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ...) -> None: ...

class RankRequest(_message.Message):
    __slots__ = ("space", "archs", "devices", "top_k", "max_latency_ms", "return_latencies", "return_uncertainty", "interval_level")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ARCHS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    RETURN_LATENCIES_FIELD_NUMBER: _ClassVar[int]
    RETURN_UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVEL_FIELD_NUMBER: _ClassVar[int]
    space: str
    archs: Architectures
    devices: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    max_latency_ms: float
    return_latencies: bool
    return_uncertainty: bool
    interval_level: float
    def __init__(self, space: _Optional[str] = ..., archs: _Optional[_Union[Architectures, _Mapping]] = ..., devices: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., max_latency_ms: _Optional[float] = ..., return_latencies: _Optional[bool] = ..., return_uncertainty: _Optional[bool] = ..., interval_level: _Optional[float] = ...) -> None: ...

class DeviceRanking(_message.Message):
    __slots__ = ("device", "latency_ms", "order", "lower_ms", "upper_ms", "prob_within_budget", "expected_spearman", "head_kind")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    LOWER_MS_FIELD_NUMBER: _ClassVar[int]
    UPPER_MS_FIELD_NUMBER: _ClassVar[int]
    PROB_WITHIN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SPEARMAN_FIELD_NUMBER: _ClassVar[int]
    HEAD_KIND_FIELD_NUMBER: _ClassVar[int]
    device: str
    latency_ms: bytes
    order: bytes
    lower_ms: bytes
    upper_ms: bytes
    prob_within_budget: bytes
    expected_spearman: float
    head_kind: str
    def __init__(self, device: _Optional[str] = ..., latency_ms: _Optional[bytes] = ..., order: _Optional[bytes] = ..., lower_ms: _Optional[bytes] = ..., upper_ms: _Optional[bytes] = ..., prob_within_budget: _Optional[bytes] = ..., expected_spearman: _Optional[float] = ..., head_kind: _Optional[str] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("space", "num_architectures", "rankings", "interval_level")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    NUM_ARCHITECTURES_FIELD_NUMBER: _ClassVar[int]
    RANKINGS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_LEVEL_FIELD_NUMBER: _ClassVar[int]
    space: str
    num_architectures: int
    rankings: _containers.RepeatedCompositeFieldContainer[DeviceRanking]
    interval_level: float
    def __init__(self, space: _Optional[str] = ..., num_architectures: _Optional[int] = ..., rankings: _Optional[_Iterable[_Union[DeviceRanking, _Mapping]]] = ..., interval_level: _Optional[float] = ...) -> None: ...

class SuggestReferencesRequest(_message.Message):
    __slots__ = ("space", "n", "seed", "device")
    SPACE_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    space: str
    n: int
    seed: int
    device: str
    def __init__(self, space: _Optional[str] = ..., n: _Optional[int] = ..., seed: _Optional[int] = ..., device: _Optional[str] = ...) -> None: ...

class SuggestReferencesResponse(_message.Message):
    __slots__ = ("genes", "archs")
    GENES_FIELD_NUMBER: _ClassVar[int]
    ARCHS_FIELD_NUMBER: _ClassVar[int]
    genes: PackedGenes
    archs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, genes: _Optional[_Union[PackedGenes, _Mapping]] = ..., archs: _Optional[_Iterable[str]] = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("name", "space", "archs", "latency_ms", "contract", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ARCHS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    archs: Architectures
    latency_ms: _containers.RepeatedScalarFieldContainer[float]
    contract: DeviceContract
    request_id: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., archs: _Optional[_Union[Architectures, _Mapping]] = ..., latency_ms: _Optional[_Iterable[float]] = ..., contract: _Optional[_Union[DeviceContract, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddMeasurementsRequest(_message.Message):
    __slots__ = ("name", "space", "archs", "latency_ms", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    ARCHS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    archs: Architectures
    latency_ms: _containers.RepeatedScalarFieldContainer[float]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., archs: _Optional[_Union[Architectures, _Mapping]] = ..., latency_ms: _Optional[_Iterable[float]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteDeviceRequest(_message.Message):
    __slots__ = ("name", "space", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteDeviceResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class CompareDevicesRequest(_message.Message):
    __slots__ = ("a", "b", "space")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    space: str
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., space: _Optional[str] = ...) -> None: ...

class CompareDevicesResponse(_message.Message):
    __slots__ = ("spearman_predicted", "num_predicted", "spearman_measured", "num_shared", "kendall_predicted")
    SPEARMAN_PREDICTED_FIELD_NUMBER: _ClassVar[int]
    NUM_PREDICTED_FIELD_NUMBER: _ClassVar[int]
    SPEARMAN_MEASURED_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARED_FIELD_NUMBER: _ClassVar[int]
    KENDALL_PREDICTED_FIELD_NUMBER: _ClassVar[int]
    spearman_predicted: float
    num_predicted: int
    spearman_measured: float
    num_shared: int
    kendall_predicted: float
    def __init__(self, spearman_predicted: _Optional[float] = ..., num_predicted: _Optional[int] = ..., spearman_measured: _Optional[float] = ..., num_shared: _Optional[int] = ..., kendall_predicted: _Optional[float] = ...) -> None: ...
