def drop_trailing_slash_duplicates(endpoints):
    """Every API path is routed with and without a trailing slash; document it once."""
    paths = {path for path, *_ in endpoints}
    return [
        (path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
        if not (path.endswith("/") and path.rstrip("/") in paths)
    ]
