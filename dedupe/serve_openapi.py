"""The OpenAPI document of `dedupe serve`'s API (served at /openapi.json), kept apart from the server's code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dedupe.match import MAX_THRESHOLD


def openapi(threshold: int, max_bytes: int, image_types: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, with this server's default threshold and body limit."""
    image_body: dict[str, Any] = {
        "required": True,
        "content": {
            **{t: {"schema": {"type": "string", "format": "binary"}} for t in image_types},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
            },
        },
    }
    error_schema = {"$ref": "#/components/schemas/Error"}
    error = {"description": "error", "content": {"application/json": {"schema": error_schema}}}
    errors = {
        "400": error | {"description": "not an image, truncated or corrupt; a bad parameter"},
        "401": error | {"description": "a token is needed"},
        "403": error | {"description": "the token is refused, or writes are turned off"},
        "413": error | {"description": f"the body is over the limit ({max_bytes:,} bytes)"},
        "415": error | {"description": "unsupported content type"},
        "422": error | {"description": "a decompression bomb, or over the pixel limit"},
        "503": error | {"description": "the store cannot be read or written (a full disk, a database unreachable)"},
    }
    threshold_parameter = {
        "name": "threshold",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_THRESHOLD, "default": threshold},
        "description": "largest pHash distance (bits of 64) that counts as a match; PDQ hashes match within 31",
    }
    hit = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "source": {"enum": ["file", "imported"]},
            "match": {"enum": ["exact", "image", "near"]},
            "reason": {"type": "string"},
            "distance": {"type": "integer"},
            "dhash_distance": {"type": "integer"},
            "width": {"type": "integer"},
            "height": {"type": "integer"},
            "content_hash": {"type": "string"},
            "hash": {"enum": ["phash", "pdq"]},
        },
    }

    def ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"description": description}
        if schema is not None:
            body["content"] = {"application/json": {"schema": schema}}
        return body

    return {
        "openapi": "3.1.0",
        "info": {"title": "dedupe serve", "version": "1", "description": "Check uploads against a ban list."},
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}, "Hit": hit},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/v1/check": {
                "post": {
                    "summary": "Does the image match the list? The closest match.",
                    "parameters": [threshold_parameter],
                    "requestBody": image_body,
                    "responses": {
                        "200": ok(
                            "the answer",
                            {
                                "type": "object",
                                "properties": {
                                    "match": {"type": "boolean"},
                                    "distance": {"type": ["integer", "null"]},
                                    "hash": {"enum": ["phash", "pdq", None]},
                                    "reason": {"type": "string"},
                                    "closest": {"oneOf": [{"$ref": "#/components/schemas/Hit"}, {"type": "null"}]},
                                },
                            },
                        ),
                        **errors,
                    },
                }
            },
            "/v1/search": {
                "post": {
                    "summary": "The closest matches of the image, closest first.",
                    "parameters": [
                        threshold_parameter,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    ],
                    "requestBody": image_body,
                    "responses": {
                        "200": ok(
                            "the matches",
                            {
                                "type": "object",
                                "properties": {
                                    "matches": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}}
                                },
                            },
                        ),
                        **errors,
                    },
                }
            },
            "/v1/fingerprints": {
                "post": {
                    "summary": "Ban an image (its fingerprint is kept, not the image), or import a list (text/csv).",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "label", "in": "query", "schema": {"type": "string"}}],
                    "requestBody": {
                        "required": True,
                        "content": {**image_body["content"], "text/csv": {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "201": ok("added: its id (an image) or how many (a list)"),
                        "200": ok("already on the list: its id"),
                        **errors,
                    },
                },
                "get": {
                    "summary": "The fingerprints on the list (only those with this label, when given).",
                    "parameters": [
                        {"name": "label", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    ],
                    "responses": {"200": ok("the fingerprints")},
                },
            },
            "/v1/fingerprints/{id}": {
                "delete": {
                    "summary": "Take a fingerprint off the list.",
                    "security": [{"bearer": []}],
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"204": ok("removed"), "404": error | {"description": "no such fingerprint"}},
                }
            },
            "/v1/status": {"get": {"summary": "Fingerprints, algorithm, last refresh.", "responses": {"200": ok("")}}},
            "/healthz": {"get": {"summary": "For load balancers.", "responses": {"200": ok("serving")}}},
        },
    }


__all__ = ["openapi"]
