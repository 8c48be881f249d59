"""Custom search attributes: every upload is findable in the Temporal UI by file, tenant and
status (e.g. `ConveyorStatus = "failed"`). They must exist in the namespace before workflows
use them: `conveyor migrate --with-store` and the local stack create them."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

FILE_ID = SearchAttributeKey.for_keyword("ConveyorFileId")
TENANT = SearchAttributeKey.for_keyword("ConveyorTenant")
STATUS = SearchAttributeKey.for_keyword("ConveyorStatus")

ALL = (FILE_ID, TENANT, STATUS)
