"""Upload tokens: what a token may do, checked where a route needs it.

A token is minted by an app's backend with its API key (`POST /v1/upload-tokens`) and handed
to a browser. It may create uploads within its own limits (size, count, types) and read back
the files it created; every other route refuses it (`api.deps.get_tenancy`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from api.deps import Tenancy, TokenScope
from api.errors import ErrorCode, Forbidden, PayloadTooLarge
from conveyor_core.db.models import File, UploadToken
from conveyor_core.keys import display_prefix, generate_upload_token, hash_api_key
from conveyor_core.types import Visibility


def may_read(tenancy: Tenancy, file: File) -> bool:
    """An API key reads every file of its tenant; a token only those it created."""
    return tenancy.token is None or file.upload_token_id == tenancy.token.id


def type_allowed(patterns: list[str], content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    for pattern in patterns:
        pattern = pattern.strip().lower()
        if pattern == "*/*" or pattern == base:
            return True
        if pattern.endswith("/*") and base.startswith(pattern[:-1]):
            return True
    return False


def check_declaration(
    token: TokenScope, size: int, content_type: str, visibility: Visibility
) -> None:
    if token.max_file_size is not None and size > token.max_file_size:
        raise PayloadTooLarge(
            f"This upload token takes files of at most {token.max_file_size} bytes; "
            f"this one declares {size}."
        )
    if visibility is Visibility.PUBLIC and not token.allow_public:
        raise Forbidden(
            "This upload token makes only private files; the app must allow public ones.",
            code=ErrorCode.VISIBILITY_NOT_ALLOWED,
        )
    if token.content_types is not None and not type_allowed(token.content_types, content_type):
        raise Forbidden(
            f"This upload token takes only {', '.join(token.content_types)}, not {content_type}.",
            code=ErrorCode.CONTENT_TYPE_NOT_ALLOWED,
        )


async def reserve_file(session: AsyncSession, token: TokenScope) -> None:
    """Counts one more file against the token, atomically; refused once it is used up."""
    counted = await session.execute(
        update(UploadToken)
        .where(
            UploadToken.id == token.id,
            or_(UploadToken.max_files.is_(None), UploadToken.files_created < UploadToken.max_files),
        )
        .values(files_created=UploadToken.files_created + 1)
        .returning(UploadToken.id)
    )
    if counted.first() is None:
        raise Forbidden(
            f"This upload token may make {token.max_files} files and has made them all.",
            code=ErrorCode.UPLOAD_TOKEN_USED_UP,
        )


async def mint(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    ttl_seconds: int,
    max_file_size: int | None,
    max_files: int | None,
    content_types: list[str] | None,
    allow_public: bool,
) -> tuple[uuid.UUID, str, datetime]:
    """A new token: (id, the token itself, shown only now, expiry)."""
    token = generate_upload_token()
    token_id = uuid.uuid4()
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    await session.execute(
        insert(UploadToken).values(
            id=token_id,
            tenant_id=tenant_id,
            token_hash=hash_api_key(token),
            prefix=display_prefix(token),
            expires_at=expires_at,
            max_file_size=max_file_size,
            max_files=max_files,
            content_types=content_types,
            allow_public=allow_public,
        )
    )
    return token_id, token, expires_at
