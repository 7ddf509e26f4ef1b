"""Errors as RFC 9457 problem details (``application/problem+json``), each with a human sentence."""

import logging
import sqlite3
from http import HTTPStatus
from typing import Any, Dict, Iterable, List, Mapping, Optional

from botocore.exceptions import BotoCoreError, ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from coffee_ranker.domain.errors import InvalidCursor, ShopNotFound, StorageUnavailable

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("coffee_ranker")


class Problem(BaseModel):
    """An RFC 9457 problem: ``type`` is about:blank, so ``title`` is the HTTP status phrase."""

    model_config = ConfigDict(extra="allow")

    type: str = Field("about:blank", description="A URI that identifies the problem type.")
    title: str = Field(..., description="The HTTP status phrase.", examples=["Not Found"])
    status: int = Field(..., description="The HTTP status code.", examples=[404])
    detail: str = Field(..., description="What went wrong, as a sentence for a person.")


class ProblemError(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        status: int,
        detail: str,
        headers: Optional[Mapping[str, str]] = None,
        extensions: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions or {}


def problem_response(
    status: int,
    detail: str,
    headers: Optional[Mapping[str, str]] = None,
    extensions: Optional[Dict[str, Any]] = None,
) -> JSONResponse:
    body: Dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extensions or {})
    return JSONResponse(body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> Dict[int, Dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problems a route may answer with."""
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses}


def _describe_validation(errors: Iterable[Mapping[str, Any]]) -> List[Dict[str, str]]:
    described = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        described.append({"field": location or "body", "message": str(error.get("msg", "is invalid"))})
    return described


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, error: ProblemError) -> JSONResponse:
        return problem_response(error.status, error.detail, error.headers, error.extensions)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            detail = "There is nothing at this path."
        elif error.status_code == 405:
            detail = f"{request.method} is not allowed here."
            return problem_response(405, detail, {"Allow": ", ".join(allowed_methods(request))})
        elif error.status_code == 400 and error.detail == "There was an error parsing the body":
            detail = "The request body could not be read: send UTF-8 JSON."
        elif isinstance(error.detail, str) and error.detail:
            detail = error.detail if error.detail.endswith(".") else error.detail + "."
        else:
            detail = HTTPStatus(error.status_code).description
        return problem_response(error.status_code, detail, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if any(tuple(e.get("loc", ())) == ("path", "shop_id") for e in error.errors()):
            # A malformed id names no shop: the same 404 as an unknown one, the id not echoed.
            return problem_response(404, str(ShopNotFound("")))
        errors = _describe_validation(error.errors())
        sentence = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        return problem_response(422, f"The request is not valid: {sentence}.", extensions={"errors": errors})

    @app.exception_handler(ShopNotFound)
    async def _no_shop(request: Request, error: ShopNotFound) -> JSONResponse:
        return problem_response(404, str(error))

    @app.exception_handler(InvalidCursor)
    async def _bad_cursor(request: Request, error: InvalidCursor) -> JSONResponse:
        return problem_response(400, str(error))

    async def _unavailable(request: Request, error: Exception) -> JSONResponse:
        log.error("storage failed on %s %s: %s", request.method, request.url.path, error)
        return problem_response(
            503,
            "The database or the photo store is not available right now; try again shortly.",
            headers={"Retry-After": "5"},
        )

    for storage_error in (StorageUnavailable, ClientError, BotoCoreError, sqlite3.OperationalError):
        app.add_exception_handler(storage_error, _unavailable)

    @app.exception_handler(ClientDisconnect)
    async def _client_left(request: Request, error: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; what matters is that the log does not call it a server error.
        log.info("client aborted %s %s before sending the whole body", request.method, request.url.path)
        return problem_response(400, "The request body ended before it was complete.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "Something went wrong on our side; it has been logged.")


def allowed_methods(request: Request) -> List[str]:
    """Every method some route serves at this path (several routes may share one), HEAD with GET."""
    methods = set()
    for route in request.app.state.api_routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def use_problem_media_type(openapi: Dict[str, Any]) -> Dict[str, Any]:
    """Make the OpenAPI document say what error responses really are: application/problem+json."""
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if status[:1] in ("4", "5") and "application/json" in content:
                    response["content"] = {PROBLEM_MEDIA_TYPE: content["application/json"]}
                    if status == "422":
                        content[PROBLEM_MEDIA_TYPE] = {"schema": {"$ref": "#/components/schemas/Problem"}}
                        response["content"] = {PROBLEM_MEDIA_TYPE: content[PROBLEM_MEDIA_TYPE]}
    return openapi
