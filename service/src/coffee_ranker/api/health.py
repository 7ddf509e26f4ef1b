"""Liveness and readiness, for the load balancer and for Ansible's verify phase."""

import logging

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from coffee_ranker.api.deps import StorageDep
from coffee_ranker.api.schemas import Liveness, Readiness
from coffee_ranker.domain.errors import StorageUnavailable
from coffee_ranker.problems import ProblemError, problem_responses

log = logging.getLogger("coffee_ranker")
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness, summary="The process is up")
def healthz() -> Liveness:
    return Liveness(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The database and the photo bucket answer",
    responses=problem_responses(503),
)
async def readyz(storage: StorageDep) -> Readiness:
    checks = {}
    for name, ping in (("database", storage.repository.ping), ("bucket", storage.object_store.ping)):
        try:
            await run_in_threadpool(ping)
            checks[name] = "ok"
        except StorageUnavailable as error:
            # Endpoints, bucket, table, paths and AWS messages are for the operator only.
            log.error("readiness: the %s is unavailable: %s", name, error)
            checks[name] = "unavailable"
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        verb = "is" if len(failing) == 1 else "are"
        raise ProblemError(
            503,
            f"Not ready: the {' and the '.join(failing)} {verb} not available.",
            headers={"Retry-After": "5"},
            extensions={"checks": checks},
        )
    return Readiness(status="ready", checks=checks)
