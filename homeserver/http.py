"""Shared aiohttp glue: Matrix error bodies, JSON bodies validated by JSON Schema, CORS."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from typing import Any

import jsonschema
import orjson
from aiohttp import web

from homeserver.errors import Codes, MatrixError, UIARequired

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization, Date",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    resp = web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")
    resp.headers.update(CORS_HEADERS)
    return resp


def error_response(err: MatrixError) -> web.Response:
    return json_response(err.to_dict(), err.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=CORS_HEADERS)
    try:
        return await handler(request)
    except MatrixError as e:
        return error_response(e)
    except UIARequired as e:
        return json_response(e.body, 401)
    except web.HTTPRequestEntityTooLarge:
        return error_response(MatrixError(413, Codes.TOO_LARGE, "Request body too large"))
    except web.HTTPNotFound:
        return error_response(MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request"))
    except web.HTTPMethodNotAllowed:
        return error_response(MatrixError(405, Codes.UNRECOGNIZED, "Unrecognized request"))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(MatrixError(500, Codes.UNKNOWN, "Internal server error"))


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    # Package data of client_api, so an installed wheel reads the copy it ships.
    schema = json.loads(files("client_api").joinpath("schemas", f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate(body: Any, schema: str) -> None:
    errors = sorted(_validator(schema).iter_errors(body), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "body"
        raise MatrixError(400, Codes.BAD_JSON, f"{where}: {err.message}")


def parse_json_object(raw: str | bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object from a body or query parameter: M_NOT_JSON / M_BAD_JSON."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise MatrixError(400, Codes.NOT_JSON, f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise MatrixError(400, Codes.BAD_JSON, f"{what} must be a JSON object")
    return value


async def read_json(request: web.Request, schema: str | None = None,
                    allow_empty: bool = False) -> Any:
    """Parse the request body as a JSON object; M_NOT_JSON / M_BAD_JSON / M_TOO_LARGE."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            body: Any = {}
        else:
            raise MatrixError(400, Codes.NOT_JSON, "Content not JSON.")
    else:
        body = parse_json_object(raw, "Content")
    if schema is not None:
        validate(body, schema)
    return body


def query_int(request: web.Request, name: str, default: int, minimum: int = 0,
              maximum: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be an integer") from None
    if v < minimum:
        raise MatrixError(400, Codes.INVALID_PARAM, f"{name} must be >= {minimum}")
    if maximum is not None:
        v = min(v, maximum)
    return v
