from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from iotistic.billing.deps import Session
from iotistic.billing.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(session: Session) -> dict[str, str]:
    """Public: the service answers and its database does."""
    try:
        await session.execute(text("SELECT 1"))
    except Exception:
        raise ApiError(503, "unavailable", "database unreachable") from None
    return {"status": "ok"}
