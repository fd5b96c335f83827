from __future__ import annotations

from fastapi import APIRouter

from iotistic.billing.deps import Ctx
from iotistic.billing.schemas import PublicKeyOut
from iotistic.core.licensing import ALGORITHM

router = APIRouter(prefix="/api/license", tags=["licence"])


@router.get("/public-key", response_model=PublicKeyOut)
async def public_key(ctx: Ctx) -> PublicKeyOut:
    """Public: the key every customer instance verifies its licence with (LICENSE_PUBLIC_KEY)."""
    return PublicKeyOut(algorithm=ALGORITHM, public_key=ctx.public_key_pem)
