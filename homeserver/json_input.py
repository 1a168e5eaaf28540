"""What JSON (and text) the server accepts from a client at all, before any endpoint looks at it.

Two limits that no endpoint schema states, applied to every body, inline filter and WebSocket frame:

- nesting depth: the parser would accept 1,000 levels, but canonical JSON, JSON Schema and orjson
  (which refuses to *write* more than 254 levels) all recurse; a value we accept must also be one we
  can hash, validate and send back inside a /sync response several levels deeper still;
- text PostgreSQL can store: a TEXT column rejects U+0000, and lone surrogates cannot be encoded
  as UTF-8 at all. The identifier grammar (spec appendix "Identifier Grammar") excludes NUL from
  every identifier; for free text we reject it too rather than strip it, so that what a client
  stores is exactly what it reads back.

Pure functions, no I/O: callers turn a problem into the errcode that suits where it came from.
"""

from __future__ import annotations

from typing import Any

MAX_JSON_DEPTH = 64  # levels of arrays/objects; a /sync response adds about ten more around it


def text_problem(s: str) -> str | None:
    """Why `s` cannot be stored as PostgreSQL text, or None if it can."""
    if "\x00" in s:
        return "contains a NUL character"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a parsed JSON value is unacceptable (too deep, bad text), or None if it is fine.

    Iterative, so that the check itself cannot hit the recursion limit it guards against."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            problem = text_problem(v)
            if problem is not None:
                return f"a string {problem}"
        elif isinstance(v, dict):
            if depth > max_depth:
                return f"nested more than {max_depth} levels deep"
            for k, item in v.items():
                problem = text_problem(k)
                if problem is not None:
                    return f"a key {problem}"
                if isinstance(item, dict | list | str):
                    stack.append((item, depth + 1))
        elif isinstance(v, list):
            if depth > max_depth:
                return f"nested more than {max_depth} levels deep"
            stack.extend((item, depth + 1) for item in v if isinstance(item, dict | list | str))
    return None
