"""Looking behind the API in tests: a workflow's scheduled activities, an object's HEAD."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client


async def scheduled_activities(temporal: Client, workflow_id: str) -> list[str]:
    """The activity types the workflow's latest run scheduled, in order."""
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def head_status(s3: Any, bucket: str, key: str) -> int:
    """200 if the object is there, else the store's status (404, 403, ...)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200
