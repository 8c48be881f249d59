"""Looking behind the API in tests: a workflow's scheduled activities, an object's HEAD."""

from __future__ import annotations

import json
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

# How the SDK records a local activity in the history.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def activity_types(history: WorkflowHistory) -> list[str]:
    """The activities a run scheduled, and those it ran as local activities (a marker each,
    recorded once the last attempt ended), in order."""
    names = []
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker = e.marker_recorded_event_attributes
            if marker.marker_name == LOCAL_ACTIVITY_MARKER:
                data = json.loads(marker.details["data"].payloads[0].data)
                names.append(str(data["activity_type"]))
    return names


async def scheduled_activities(temporal: Client, workflow_id: str) -> list[str]:
    """The activity types the workflow's latest run scheduled or ran locally, in order."""
    return activity_types(await temporal.get_workflow_handle(workflow_id).fetch_history())


def head_status(s3: Any, bucket: str, key: str) -> int:
    """200 if the object is there, else the store's status (404, 403, ...)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200
