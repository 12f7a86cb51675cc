"""Activity kinds by provider and provider type (Bitrix24), the mapping's fallback to
shorter keys, and `inspect` listing the kinds actually present with counts."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
from support import SALESBOOKS
from syncd_bitrix24 import Bitrix24Connector, Bitrix24Settings
from syncd_bitrix24.streams import normalize_activity
from syncd_fakes.bitrix24.sample import sample_dataset
from syncd_fakes.bitrix24.server import FakeBitrix24

from syncd.config import TenantConfig
from syncd.mapping import TenantMapper
from syncd.salesbook import load_salesbook

#: The response example of crm.activity.list (Bitrix24 REST docs,
#: https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-list.html),
#: trimmed to the fields syncd reads.
DOC_CALL = {
    "ID": "20", "OWNER_ID": "15", "OWNER_TYPE_ID": "3", "TYPE_ID": "2",
    "PROVIDER_ID": "VOXIMPLANT_CALL", "PROVIDER_TYPE_ID": "CALL",
    "SUBJECT": "Outgoing call Klaus Weber", "CREATED": "2020-09-27T13:26:55+03:00",
    "LAST_UPDATED": "2021-03-21T20:28:24+03:00", "START_TIME": "2020-09-27T13:25:00+03:00",
    "END_TIME": "2020-09-27T19:25:00+03:00", "DEADLINE": "2020-09-27T13:25:00+03:00",
    "COMPLETED": "Y", "STATUS": "2", "RESPONSIBLE_ID": "505", "DESCRIPTION": "",
}


def app_activity(activity_id: str, provider_type: str) -> dict[str, str]:
    """An activity created by an app: TYPE_ID 6, PROVIDER_ID REST_APP, PROVIDER_TYPE_ID the
    type the app registered (crm.activity.type.add: "when creating an activity this is
    PROVIDER_TYPE_ID")."""
    return {**DOC_CALL, "ID": activity_id, "OWNER_TYPE_ID": "2", "TYPE_ID": "6",
            "PROVIDER_ID": "REST_APP", "PROVIDER_TYPE_ID": provider_type}


def test_activity_keys_carry_provider_and_provider_type() -> None:
    assert normalize_activity(DOC_CALL).type == "call:VOXIMPLANT_CALL:CALL"
    assert normalize_activity(app_activity("21", "PRESENTATION")).type == \
        "todo:REST_APP:PRESENTATION"
    assert normalize_activity(app_activity("22", "REMINDER")).type == "todo:REST_APP:REMINDER"
    todo = {**app_activity("23", "TODO"), "PROVIDER_ID": "CRM_TODO"}
    assert normalize_activity(todo).type == "todo:CRM_TODO:TODO"
    bare = {k: v for k, v in DOC_CALL.items() if not k.startswith("PROVIDER")}
    assert normalize_activity(bare).type == "call", "no provider: the TYPE_ID kind alone"


def mapper(kinds: dict[str, str]) -> TenantMapper:
    config = TenantConfig(plugin="bitrix24", salesbook="b2b-services-9", connection={},
                          mapping={"activity_types": kinds})
    return TenantMapper(config, load_salesbook(SALESBOOKS / "b2b-services-9.yaml"), {})


@pytest.mark.parametrize(("key", "kind"), [
    ("todo:REST_APP:PRESENTATION", "meeting"),  # the whole key is mapped
    ("todo:REST_APP:REMINDER", "call"),  # falls back to the provider
    ("todo:CRM_TODO:TODO", "task"),  # falls back to the TYPE_ID kind
    ("todo", "task"),  # a TYPE_ID-only key still works
    ("call:VOXIMPLANT_CALL:CALL", "call"),  # unmapped: its first part
    ("task_3", "task_3"),  # keys of other CRMs are untouched
])
def test_the_mapping_names_a_kind_by_its_longest_listed_prefix(key: str, kind: str) -> None:
    kinds = {"todo": "task", "todo:REST_APP": "call", "todo:REST_APP:PRESENTATION": "meeting"}
    assert mapper(kinds).kind(key) == kind


def test_inspect_lists_the_kinds_present_with_counts() -> None:
    dataset = sample_dataset(datetime.now(UTC))
    expected = Counter(normalize_activity(row).type for row in dataset.activities.rows.values())
    assert expected["todo:REST_APP:PRESENTATION"] > 0, "the sample has app activities"
    assert expected["todo:REST_APP:FOLLOWUP"] > 0
    with FakeBitrix24(dataset, burst=50, rate=50) as fake:
        connector = Bitrix24Connector(Bitrix24Settings(
            base_url=fake.base_url, webhook_url=fake.webhook_url, bucket_rate=50), tenant="t")
        try:
            found = connector.inspect()
        finally:
            connector.close()
    assert found.activity_kinds == dict(expected)
    counts = list(found.activity_kinds.values())
    assert counts == sorted(counts, reverse=True), "most frequent first"
