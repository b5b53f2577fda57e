from shortlist.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Variant(_message.Message):
    __slots__ = ("name", "share", "retrieval_target", "ranking_target", "version", "order", "mmr_lambda", "candidates", "rules", "mode", "arms")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SERVE: _ClassVar[Variant.Mode]
        INTERLEAVE: _ClassVar[Variant.Mode]
    SERVE: Variant.Mode
    INTERLEAVE: Variant.Mode
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_TARGET_FIELD_NUMBER: _ClassVar[int]
    RANKING_TARGET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ARMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    share: float
    retrieval_target: str
    ranking_target: str
    version: str
    order: str
    mmr_lambda: float
    candidates: int
    rules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rule]
    mode: Variant.Mode
    arms: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., share: _Optional[float] = ..., retrieval_target: _Optional[str] = ..., ranking_target: _Optional[str] = ..., version: _Optional[str] = ..., order: _Optional[str] = ..., mmr_lambda: _Optional[float] = ..., candidates: _Optional[int] = ..., rules: _Optional[_Iterable[_Union[_common_pb2.Rule, _Mapping]]] = ..., mode: _Optional[_Union[Variant.Mode, str]] = ..., arms: _Optional[_Iterable[str]] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("name", "salt", "variants", "shadow", "shadow_fraction")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FRACTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    salt: str
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    shadow: Variant
    shadow_fraction: float
    def __init__(self, name: _Optional[str] = ..., salt: _Optional[str] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., shadow: _Optional[_Union[Variant, _Mapping]] = ..., shadow_fraction: _Optional[float] = ...) -> None: ...

class SetExperimentRequest(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExperimentState(_message.Message):
    __slots__ = ("experiment", "set_at")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    SET_AT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    set_at: str
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ..., set_at: _Optional[str] = ...) -> None: ...
