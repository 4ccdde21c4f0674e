"""The typed search attributes operators filter cases on in the Temporal UI.

Only non-identifying fields: the partnership, where the case stands and the
agency slugs and categories. Never a child's name, date of birth, address or
NHS number.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

PARTNERSHIP = SearchAttributeKey.for_keyword("EscalationPartnership")
AREA = SearchAttributeKey.for_keyword("EscalationArea")
STAGE_INDEX = SearchAttributeKey.for_int("EscalationStageIndex")
STAGE_NAME = SearchAttributeKey.for_keyword("EscalationStageName")
STATUS = SearchAttributeKey.for_keyword("EscalationStatus")
DEADLINE = SearchAttributeKey.for_datetime("EscalationDeadline")
IMMEDIATE_RISK = SearchAttributeKey.for_bool("EscalationImmediateRisk")
AGENCIES = SearchAttributeKey.for_keyword_list("EscalationAgencies")
CATEGORIES = SearchAttributeKey.for_keyword_list("EscalationCategories")

ALL: tuple[SearchAttributeKey, ...] = (
    PARTNERSHIP,
    AREA,
    STAGE_INDEX,
    STAGE_NAME,
    STATUS,
    DEADLINE,
    IMMEDIATE_RISK,
    AGENCIES,
    CATEGORIES,
)

_CLI_TYPE = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DATETIME": "Datetime",
    "BOOL": "Bool",
    "KEYWORD_LIST": "KeywordList",
}


def _type_name(key: SearchAttributeKey) -> str:
    return key.indexed_value_type.name


def dev_server_args() -> list[str]:
    """``--search-attribute NAME=TYPE`` for ``temporal server start-dev``."""
    args: list[str] = []
    for key in ALL:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE[_type_name(key)]}"]
    return args


def indexed_types() -> dict[str, IndexedValueType.ValueType]:
    """For ``operator_service.add_search_attributes`` (the time-skipping
    server refuses attributes that were never registered)."""
    return {key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in ALL}
