"""Domain errors of the server and the one place that turns them into HTTP answers.

::

    ServerError (400 unless a subclass says otherwise)
    ├── BadRequest     400  the request cannot be done as asked (the message says why)
    ├── Unauthorized   401  no credentials, or credentials that are not valid
    ├── Forbidden      403  valid credentials without the permission
    ├── NotFound       404  no such object (or one the caller may not know about)
    ├── Conflict       409  exists already; or a stage call without the live lease
    └── Unavailable    503  a forge or the local git could not be asked

``bastion.store.errors.NotFound`` / ``Conflict`` map to 404 / 409 with their message (store
messages name objects, never secrets). Request validation errors become 400 with a message
that names the field (``query parameter per_page: ...``). Anything else is a 500 whose body
says only "internal error" — the traceback goes to the server log, never to the client. Every
error body is ``{"message": "..."}`` (``bastion.rpc.api.ErrorOut``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bastion.store import errors as store_errors

log = logging.getLogger("bastion.server")


class ServerError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError):  # noqa: N818 - HTTP's names read best at the call sites
    status_code = 400


class Unauthorized(ServerError):  # noqa: N818
    status_code = 401


class Forbidden(ServerError):  # noqa: N818
    status_code = 403


class NotFound(ServerError):  # noqa: N818
    status_code = 404


class Conflict(ServerError):  # noqa: N818
    status_code = 409


class Unavailable(ServerError):  # noqa: N818
    status_code = 503


def error_response(status_code: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse({"message": message}, status_code=status_code, headers=headers)


def _location(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "request"
    kind, *rest = loc
    path = ".".join(str(p) for p in rest)
    if kind == "body":
        return f"body field {path}" if path else "body"
    if kind in {"query", "path", "header", "cookie"}:
        return f"{kind} parameter {path}"
    return ".".join(str(p) for p in loc)


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = _location(tuple(error.get("loc", ())))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field (check its spelling)"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping above on ``app``."""

    async def on_server_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServerError)
        response = error_response(exc.status_code, exc.message)
        retry_after = getattr(exc, "retry_after", None)  # 429 and 503 may say when to retry
        if isinstance(retry_after, int):
            response.headers["Retry-After"] = str(retry_after)
        return response

    async def on_store_not_found(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, str(exc))

    async def on_store_conflict(_request: Request, exc: Exception) -> JSONResponse:
        return error_response(409, str(exc))

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, validation_message(exc))

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return error_response(exc.status_code, message)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "internal error on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc_info=exc,
        )
        return error_response(500, "internal error (the server log has the details)")

    app.add_exception_handler(ServerError, on_server_error)
    app.add_exception_handler(store_errors.NotFound, on_store_not_found)
    app.add_exception_handler(store_errors.Conflict, on_store_conflict)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
