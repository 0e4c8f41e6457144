"""drf-spectacular hooks for /api/schema/."""

HTTP_METHODS = {"get", "put", "patch", "post", "delete"}
WRITES = {"put", "patch", "post", "delete"}

# The one error shape (plum.api.errors): every refusal of every operation has it.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "Problems per request field (or header), if any.",
                },
            },
        }
    },
}
ERRORS_EVERYWHERE = {
    "400": "Invalid input (query, body or header); nothing was changed.",
    "401": "No or an unknown API key.",
    "403": "The key lacks the scope this endpoint needs (or the user the role).",
    "404": "No such object among the key's programmes (also: an invalid page cursor).",
    "429": "Too many requests (per API client), or too many unknown voucher codes.",
}
ERRORS_ON_WRITES = {
    "409": "The object's state refuses this, or a request with this Idempotency-Key is in flight.",
    "413": "The request body is over the size limit.",
    "415": "Unsupported request content type.",
    "422": "The request cannot be processed as sent (e.g. an Idempotency-Key reused with "
    "another body).",
}


def drop_trailing_slash_duplicates(endpoints):
    """Every API path is routed with and without a trailing slash; document it once."""
    paths = {path for path, *_ in endpoints}
    return [
        (path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
        if not (path.endswith("/") and path.rstrip("/") in paths)
    ]


def document_error_responses(result, generator, request, public):
    """Document the error responses every operation can give, in the one error shape, so a
    client (and the schemathesis run in tests/security) can rely on the schema for them too.
    Responses an operation documents itself are kept."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            errors = {**ERRORS_EVERYWHERE, **(ERRORS_ON_WRITES if method in WRITES else {})}
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                responses.setdefault(status, {"description": description, "content": reference})
    return result
