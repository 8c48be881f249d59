"""Upload tokens: minted by an app's backend for a browser, with the app's API key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Response, status
from sqlalchemy import update

from api import tokens
from api.deps import SessionDep, StateDep, TenancyDep
from api.errors import AUTHENTICATED, ErrorCode, NotFound, Unprocessable, responses
from api.token_schemas import UploadTokenCreate, UploadTokenCreated
from conveyor_core.db.models import UploadToken

router = APIRouter(prefix="/v1/upload-tokens", tags=["upload tokens"], responses=AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadTokenCreated,
    responses=responses(ErrorCode.INVALID_REQUEST),
)
async def create_upload_token(
    body: UploadTokenCreate, state: StateDep, session: SessionDep, tenancy: TenancyDep
) -> UploadTokenCreated:
    """A short-lived token for a browser: it may create uploads within these limits and
    read back the files it created (status, events, content, thumbnails, search among
    them), nothing else. Shown once."""
    settings = state.settings
    if body.expires_in > settings.upload_token_max_ttl_seconds:
        raise Unprocessable(
            f"An upload token lives at most {settings.upload_token_max_ttl_seconds} s.",
            code=ErrorCode.INVALID_REQUEST,
        )
    max_file_size = min(body.max_file_size or settings.max_file_size, settings.max_file_size)
    token_id, token, expires_at = await tokens.mint(
        session,
        tenancy.tenant_id,
        ttl_seconds=body.expires_in,
        max_file_size=max_file_size,
        max_files=body.max_files,
        content_types=body.content_types,
        allow_public=body.allow_public,
    )
    await session.commit()
    return UploadTokenCreated(
        id=token_id,
        token=token,
        expires_at=expires_at,
        max_file_size=max_file_size,
        max_files=body.max_files,
        content_types=body.content_types,
        allow_public=body.allow_public,
    )


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(ErrorCode.UPLOAD_TOKEN_NOT_FOUND),
)
async def revoke_upload_token(
    token_id: uuid.UUID, session: SessionDep, tenancy: TenancyDep
) -> Response:
    """Revokes a token at once: its next request is 401 `upload_token_expired`. Files it
    made stay."""
    revoked = await session.execute(
        update(UploadToken)
        .where(UploadToken.id == token_id, UploadToken.tenant_id == tenancy.tenant_id)
        .values(revoked_at=datetime.now(UTC))
        .returning(UploadToken.id)
    )
    if revoked.first() is None:
        raise NotFound("No such upload token.", code=ErrorCode.UPLOAD_TOKEN_NOT_FOUND)
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
