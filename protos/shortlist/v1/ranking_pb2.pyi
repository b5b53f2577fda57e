from shortlist.v1 import common_pb2 as _common_pb2
from shortlist.v1 import retrieval_pb2 as _retrieval_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankRequest(_message.Message):
    __slots__ = ("user", "candidates", "items", "k", "request_id", "mmr_lambda", "version", "rules", "explain", "order")
    USER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MMR_LAMBDA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    user: _retrieval_pb2.UserContext
    candidates: _retrieval_pb2.CandidateColumns
    items: _containers.RepeatedCompositeFieldContainer[_common_pb2.Item]
    k: int
    request_id: str
    mmr_lambda: float
    version: str
    rules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rule]
    explain: bool
    order: str
    def __init__(self, user: _Optional[_Union[_retrieval_pb2.UserContext, _Mapping]] = ..., candidates: _Optional[_Union[_retrieval_pb2.CandidateColumns, _Mapping]] = ..., items: _Optional[_Iterable[_Union[_common_pb2.Item, _Mapping]]] = ..., k: _Optional[int] = ..., request_id: _Optional[str] = ..., mmr_lambda: _Optional[float] = ..., version: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[_common_pb2.Rule, _Mapping]]] = ..., explain: _Optional[bool] = ..., order: _Optional[str] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("item_id", "score", "rank", "title", "categories", "rules", "contributions", "because_of_item_id", "score_rank")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    BECAUSE_OF_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_RANK_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    rank: int
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedScalarFieldContainer[str]
    contributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureContribution]
    because_of_item_id: str
    score_rank: int
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[str]] = ..., contributions: _Optional[_Iterable[_Union[_common_pb2.FeatureContribution, _Mapping]]] = ..., because_of_item_id: _Optional[str] = ..., score_rank: _Optional[int] = ...) -> None: ...

class RankResponse(_message.Message):
    __slots__ = ("items", "version", "timings_ms", "configuration")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RankedItem]
    version: str
    timings_ms: _containers.ScalarMap[str, float]
    configuration: str
    def __init__(self, items: _Optional[_Iterable[_Union[RankedItem, _Mapping]]] = ..., version: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., configuration: _Optional[str] = ...) -> None: ...
