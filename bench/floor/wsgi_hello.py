"""A bare WSGI application: what gunicorn alone serves on this machine."""


def application(environ, start_response):
    body = b'{"ok": true}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "12")])
    return [body]
