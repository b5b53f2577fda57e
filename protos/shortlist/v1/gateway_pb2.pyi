from shortlist.v1 import admin_pb2 as _admin_pb2
from shortlist.v1 import common_pb2 as _common_pb2
from shortlist.v1 import experiment_pb2 as _experiment_pb2
from shortlist.v1 import retrieval_pb2 as _retrieval_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "k", "filters", "recent_item_ids", "debug", "after_event_id", "user_attributes", "rules", "explain", "variant")
    class UserAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    k: int
    filters: _common_pb2.Filters
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    debug: bool
    after_event_id: str
    user_attributes: _containers.ScalarMap[str, str]
    rules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rule]
    explain: bool
    variant: str
    def __init__(self, user_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., debug: _Optional[bool] = ..., after_event_id: _Optional[str] = ..., user_attributes: _Optional[_Mapping[str, str]] = ..., rules: _Optional[_Iterable[_Union[_common_pb2.Rule, _Mapping]]] = ..., explain: _Optional[bool] = ..., variant: _Optional[str] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "title", "categories", "sources", "retrieval_rank", "ranking_rank", "rules", "contributions", "because_of_item_id", "team", "score_rank")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_RANK_FIELD_NUMBER: _ClassVar[int]
    RANKING_RANK_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    BECAUSE_OF_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    SCORE_RANK_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    sources: _containers.RepeatedCompositeFieldContainer[_common_pb2.GeneratorScore]
    retrieval_rank: int
    ranking_rank: int
    rules: _containers.RepeatedScalarFieldContainer[str]
    contributions: _containers.RepeatedCompositeFieldContainer[_common_pb2.FeatureContribution]
    because_of_item_id: str
    team: str
    score_rank: int
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., sources: _Optional[_Iterable[_Union[_common_pb2.GeneratorScore, _Mapping]]] = ..., retrieval_rank: _Optional[int] = ..., ranking_rank: _Optional[int] = ..., rules: _Optional[_Iterable[str]] = ..., contributions: _Optional[_Iterable[_Union[_common_pb2.FeatureContribution, _Mapping]]] = ..., because_of_item_id: _Optional[str] = ..., team: _Optional[str] = ..., score_rank: _Optional[int] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "timings_ms", "version", "degraded", "segment", "request_id", "configuration", "variant")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    timings_ms: _containers.ScalarMap[str, float]
    version: str
    degraded: bool
    segment: _common_pb2.UserSegment
    request_id: str
    configuration: str
    variant: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., version: _Optional[str] = ..., degraded: _Optional[bool] = ..., segment: _Optional[_Union[_common_pb2.UserSegment, str]] = ..., request_id: _Optional[str] = ..., configuration: _Optional[str] = ..., variant: _Optional[str] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("user_id", "item_id", "k", "filters", "recent_item_ids", "rules", "variant", "user_attributes")
    class UserAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    k: int
    filters: _common_pb2.Filters
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    rules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Rule]
    variant: str
    user_attributes: _containers.ScalarMap[str, str]
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., k: _Optional[int] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., rules: _Optional[_Iterable[_Union[_common_pb2.Rule, _Mapping]]] = ..., variant: _Optional[str] = ..., user_attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ItemExplanation(_message.Message):
    __slots__ = ("item_id", "verdict", "reason", "item", "retrieval")
    class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        VERDICT_UNSPECIFIED: _ClassVar[ItemExplanation.Verdict]
        RECOMMENDED: _ClassVar[ItemExplanation.Verdict]
        RANKED_BELOW_K: _ClassVar[ItemExplanation.Verdict]
        NOT_RETRIEVED: _ClassVar[ItemExplanation.Verdict]
        SEEN: _ClassVar[ItemExplanation.Verdict]
        FILTERED: _ClassVar[ItemExplanation.Verdict]
        UNKNOWN_ITEM: _ClassVar[ItemExplanation.Verdict]
    VERDICT_UNSPECIFIED: ItemExplanation.Verdict
    RECOMMENDED: ItemExplanation.Verdict
    RANKED_BELOW_K: ItemExplanation.Verdict
    NOT_RETRIEVED: ItemExplanation.Verdict
    SEEN: ItemExplanation.Verdict
    FILTERED: ItemExplanation.Verdict
    UNKNOWN_ITEM: ItemExplanation.Verdict
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    verdict: ItemExplanation.Verdict
    reason: str
    item: RecommendedItem
    retrieval: _common_pb2.ItemVerdict
    def __init__(self, item_id: _Optional[str] = ..., verdict: _Optional[_Union[ItemExplanation.Verdict, str]] = ..., reason: _Optional[str] = ..., item: _Optional[_Union[RecommendedItem, _Mapping]] = ..., retrieval: _Optional[_Union[_common_pb2.ItemVerdict, _Mapping]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("items", "variant", "version", "configuration", "segment", "request_id", "k")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIGURATION_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemExplanation]
    variant: str
    version: str
    configuration: str
    segment: _common_pb2.UserSegment
    request_id: str
    k: int
    def __init__(self, items: _Optional[_Iterable[_Union[ItemExplanation, _Mapping]]] = ..., variant: _Optional[str] = ..., version: _Optional[str] = ..., configuration: _Optional[str] = ..., segment: _Optional[_Union[_common_pb2.UserSegment, str]] = ..., request_id: _Optional[str] = ..., k: _Optional[int] = ...) -> None: ...
