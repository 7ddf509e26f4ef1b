"""Liveness and readiness, for the load balancer and for Ansible's verify phase."""

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from coffee_ranker.api.deps import StorageDep
from coffee_ranker.api.schemas import Liveness, Readiness
from coffee_ranker.domain.errors import StorageUnavailable
from coffee_ranker.problems import ProblemError, problem_responses

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
    failures = []
    for name, ping in (("database", storage.repository.ping), ("bucket", storage.object_store.ping)):
        try:
            await run_in_threadpool(ping)
            checks[name] = "ok"
        except StorageUnavailable as error:
            checks[name] = "unavailable"
            failures.append(str(error))
    if failures:
        raise ProblemError(
            503,
            "Not ready: " + "; ".join(failure.rstrip(".") for failure in failures) + ".",
            headers={"Retry-After": "5"},
            extensions={"checks": checks},
        )
    return Readiness(status="ready", checks=checks)
