from shortlist.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetrieveRequest(_message.Message):
    __slots__ = ("user_id", "recent_item_ids", "filters", "max_candidates", "request_id", "k", "after_event_id", "user_attributes", "explain_item_id")
    class UserAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    MAX_CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: _common_pb2.Filters
    max_candidates: int
    request_id: str
    k: int
    after_event_id: str
    user_attributes: _containers.ScalarMap[str, str]
    explain_item_id: str
    def __init__(self, user_id: _Optional[str] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[_Union[_common_pb2.Filters, _Mapping]] = ..., max_candidates: _Optional[int] = ..., request_id: _Optional[str] = ..., k: _Optional[int] = ..., after_event_id: _Optional[str] = ..., user_attributes: _Optional[_Mapping[str, str]] = ..., explain_item_id: _Optional[str] = ...) -> None: ...

class CandidateColumns(_message.Message):
    __slots__ = ("item_ids", "retrieval_scores", "generators", "generator_scores", "generator_ranks", "generator_affinities")
    ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_SCORES_FIELD_NUMBER: _ClassVar[int]
    GENERATORS_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_SCORES_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_RANKS_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_AFFINITIES_FIELD_NUMBER: _ClassVar[int]
    item_ids: _containers.RepeatedScalarFieldContainer[str]
    retrieval_scores: _containers.RepeatedScalarFieldContainer[float]
    generators: _containers.RepeatedScalarFieldContainer[str]
    generator_scores: _containers.RepeatedScalarFieldContainer[float]
    generator_ranks: _containers.RepeatedScalarFieldContainer[int]
    generator_affinities: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, item_ids: _Optional[_Iterable[str]] = ..., retrieval_scores: _Optional[_Iterable[float]] = ..., generators: _Optional[_Iterable[str]] = ..., generator_scores: _Optional[_Iterable[float]] = ..., generator_ranks: _Optional[_Iterable[int]] = ..., generator_affinities: _Optional[_Iterable[float]] = ...) -> None: ...

class UserContext(_message.Message):
    __slots__ = ("user_id", "history_length", "recent_item_ids", "segment", "last_timestamp")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    RECENT_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    LAST_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    history_length: int
    recent_item_ids: _containers.RepeatedScalarFieldContainer[str]
    segment: _common_pb2.UserSegment
    last_timestamp: int
    def __init__(self, user_id: _Optional[str] = ..., history_length: _Optional[int] = ..., recent_item_ids: _Optional[_Iterable[str]] = ..., segment: _Optional[_Union[_common_pb2.UserSegment, str]] = ..., last_timestamp: _Optional[int] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("user", "candidates", "items", "version", "timings_ms", "explained")
    class TimingsMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    USER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_MS_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    user: UserContext
    candidates: CandidateColumns
    items: _containers.RepeatedCompositeFieldContainer[_common_pb2.Item]
    version: str
    timings_ms: _containers.ScalarMap[str, float]
    explained: _common_pb2.ItemVerdict
    def __init__(self, user: _Optional[_Union[UserContext, _Mapping]] = ..., candidates: _Optional[_Union[CandidateColumns, _Mapping]] = ..., items: _Optional[_Iterable[_Union[_common_pb2.Item, _Mapping]]] = ..., version: _Optional[str] = ..., timings_ms: _Optional[_Mapping[str, float]] = ..., explained: _Optional[_Union[_common_pb2.ItemVerdict, _Mapping]] = ...) -> None: ...

class SimilarItemsRequest(_message.Message):
    __slots__ = ("item_id", "k", "request_id")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    k: int
    request_id: str
    def __init__(self, item_id: _Optional[str] = ..., k: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ScoredItem(_message.Message):
    __slots__ = ("item", "score")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item: _common_pb2.Item
    score: float
    def __init__(self, item: _Optional[_Union[_common_pb2.Item, _Mapping]] = ..., score: _Optional[float] = ...) -> None: ...

class SimilarItemsResponse(_message.Message):
    __slots__ = ("items", "version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    version: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., version: _Optional[str] = ...) -> None: ...

class RecordInteractionRequest(_message.Message):
    __slots__ = ("user_id", "item_id", "weight", "timestamp", "request_id", "client_event_id", "event", "follows_request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    FOLLOWS_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    weight: float
    timestamp: int
    request_id: str
    client_event_id: str
    event: str
    follows_request_id: str
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., weight: _Optional[float] = ..., timestamp: _Optional[int] = ..., request_id: _Optional[str] = ..., client_event_id: _Optional[str] = ..., event: _Optional[str] = ..., follows_request_id: _Optional[str] = ...) -> None: ...

class RecordInteractionResponse(_message.Message):
    __slots__ = ("sequence", "history_length", "event_id", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    history_length: int
    event_id: str
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., history_length: _Optional[int] = ..., event_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class UpsertItemRequest(_message.Message):
    __slots__ = ("item_id", "title", "categories", "text", "request_id")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    text: str
    request_id: str
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., text: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpsertItemResponse(_message.Message):
    __slots__ = ("created", "sequence", "event_id")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    created: bool
    sequence: int
    event_id: str
    def __init__(self, created: _Optional[bool] = ..., sequence: _Optional[int] = ..., event_id: _Optional[str] = ...) -> None: ...

class SearchItemsRequest(_message.Message):
    __slots__ = ("query", "k", "request_id")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    query: str
    k: int
    request_id: str
    def __init__(self, query: _Optional[str] = ..., k: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class SearchItemsResponse(_message.Message):
    __slots__ = ("items", "fuzzy", "version")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    FUZZY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ScoredItem]
    fuzzy: bool
    version: str
    def __init__(self, items: _Optional[_Iterable[_Union[ScoredItem, _Mapping]]] = ..., fuzzy: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...
