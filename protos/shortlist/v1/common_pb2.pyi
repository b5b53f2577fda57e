from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UserSegment(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USER_SEGMENT_UNSPECIFIED: _ClassVar[UserSegment]
    USER_SEGMENT_NEW: _ClassVar[UserSegment]
    USER_SEGMENT_ONBOARDING: _ClassVar[UserSegment]
    USER_SEGMENT_LIGHT: _ClassVar[UserSegment]
    USER_SEGMENT_ESTABLISHED: _ClassVar[UserSegment]
USER_SEGMENT_UNSPECIFIED: UserSegment
USER_SEGMENT_NEW: UserSegment
USER_SEGMENT_ONBOARDING: UserSegment
USER_SEGMENT_LIGHT: UserSegment
USER_SEGMENT_ESTABLISHED: UserSegment

class Filters(_message.Message):
    __slots__ = ("exclude_item_ids", "include_categories", "exclude_categories")
    EXCLUDE_ITEM_IDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    exclude_item_ids: _containers.RepeatedScalarFieldContainer[str]
    include_categories: _containers.RepeatedScalarFieldContainer[str]
    exclude_categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, exclude_item_ids: _Optional[_Iterable[str]] = ..., include_categories: _Optional[_Iterable[str]] = ..., exclude_categories: _Optional[_Iterable[str]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("action", "item_id", "category", "factor", "position")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[Rule.Action]
        BOOST: _ClassVar[Rule.Action]
        BURY: _ClassVar[Rule.Action]
        PIN: _ClassVar[Rule.Action]
        EXCLUDE: _ClassVar[Rule.Action]
    ACTION_UNSPECIFIED: Rule.Action
    BOOST: Rule.Action
    BURY: Rule.Action
    PIN: Rule.Action
    EXCLUDE: Rule.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    action: Rule.Action
    item_id: str
    category: str
    factor: float
    position: int
    def __init__(self, action: _Optional[_Union[Rule.Action, str]] = ..., item_id: _Optional[str] = ..., category: _Optional[str] = ..., factor: _Optional[float] = ..., position: _Optional[int] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("feature", "description", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    description: str
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., description: _Optional[str] = ..., contribution: _Optional[float] = ...) -> None: ...

class GeneratorScore(_message.Message):
    __slots__ = ("generator", "score", "rank")
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    generator: str
    score: float
    rank: int
    def __init__(self, generator: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("item_id", "title", "categories")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    title: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, item_id: _Optional[str] = ..., title: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemVerdict(_message.Message):
    __slots__ = ("status", "reason", "rank", "sources", "candidates")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[ItemVerdict.Status]
        CANDIDATE: _ClassVar[ItemVerdict.Status]
        NOT_RETRIEVED: _ClassVar[ItemVerdict.Status]
        SEEN: _ClassVar[ItemVerdict.Status]
        FILTERED: _ClassVar[ItemVerdict.Status]
        UNKNOWN_ITEM: _ClassVar[ItemVerdict.Status]
    STATUS_UNSPECIFIED: ItemVerdict.Status
    CANDIDATE: ItemVerdict.Status
    NOT_RETRIEVED: ItemVerdict.Status
    SEEN: ItemVerdict.Status
    FILTERED: ItemVerdict.Status
    UNKNOWN_ITEM: ItemVerdict.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    status: ItemVerdict.Status
    reason: str
    rank: int
    sources: _containers.RepeatedCompositeFieldContainer[GeneratorScore]
    candidates: int
    def __init__(self, status: _Optional[_Union[ItemVerdict.Status, str]] = ..., reason: _Optional[str] = ..., rank: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[GeneratorScore, _Mapping]]] = ..., candidates: _Optional[int] = ...) -> None: ...
