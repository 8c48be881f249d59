"""Request and response bodies of `/v1/upload-tokens`."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# "image/png", "image/*" or "*/*": what a token may declare.
_TYPE_PATTERN = re.compile(
    r"^(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/(\*|[a-z0-9][a-z0-9!#$&^_.+-]{0,126}))$"
)


class UploadTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Seconds from now; at most CONVEYOR_UPLOAD_TOKEN_MAX_TTL_SECONDS.
    expires_in: Annotated[int, Field(ge=10)] = 3600
    max_file_size: Annotated[int | None, Field(ge=1)] = None
    max_files: Annotated[int | None, Field(ge=1, le=100_000)] = None
    content_types: Annotated[list[str] | None, Field(min_length=1, max_length=32)] = None
    # Its uploads may be public (served by the edge to anyone); off: private only.
    allow_public: bool = False

    @field_validator("content_types")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        lowered = [v.strip().lower() for v in value]
        for pattern in lowered:
            if not _TYPE_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern!r} is not a type like image/png or image/*")
        return lowered


class UploadTokenCreated(BaseModel):
    id: uuid.UUID
    # Shown only here: give it to the browser, which sends it as `Authorization: Bearer`.
    token: str
    expires_at: datetime
    max_file_size: int | None
    max_files: int | None
    content_types: list[str] | None
    allow_public: bool
