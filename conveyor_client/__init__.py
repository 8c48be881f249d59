"""Conveyor's Python client: resumable parallel uploads, files, search.

Example:
    >>> from conveyor_client import Client
    >>> with Client("http://127.0.0.1:8000", "cvk_...") as client:
    ...     file = client.upload("big.iso", progress=print, wait=True)

A webhook receiver checks what it got with
`verify_signature(secret, request.headers["Conveyor-Signature"], raw_body)`.
"""

from conveyor_client._checksums import PartChecksum
from conveyor_client._client import Client
from conveyor_client._exceptions import (
    APIError,
    AuthenticationError,
    ConflictError,
    ConveyorError,
    GoneError,
    IntegrityError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ServerError,
    StoreError,
    TransportError,
    UploadPaused,
    ValidationError,
    WaitTimeout,
)
from conveyor_client._models import (
    TERMINAL_STATUSES,
    File,
    FileEvent,
    Stage,
    Thumbnail,
    Upload,
    UploadPart,
    UploadProgress,
    UploadToken,
)
from conveyor_client._progress import ProgressCallback
from conveyor_client._throttle import Throttle
from conveyor_client._webhooks import WebhookSignatureError, verify_signature

__all__ = [
    "APIError",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConveyorError",
    "File",
    "FileEvent",
    "GoneError",
    "IntegrityError",
    "NotFoundError",
    "PartChecksum",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProgressCallback",
    "ServerError",
    "Stage",
    "StoreError",
    "TERMINAL_STATUSES",
    "Throttle",
    "Thumbnail",
    "TransportError",
    "Upload",
    "UploadPart",
    "UploadPaused",
    "UploadProgress",
    "UploadToken",
    "ValidationError",
    "WaitTimeout",
    "WebhookSignatureError",
    "verify_signature",
]

# Let the exported names report this package as their home, as httpx does.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = "conveyor_client"
del _name, _obj
