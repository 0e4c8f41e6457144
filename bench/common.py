"""What the benchmarks share: scratch databases, pgbench baselines, gunicorn, wrk (and the Lua
that makes it print JSON), a signed-in HTTP session and a local HTTP provider stub.

Import it from a script in bench/ as `import common` (bench/ is the script's own directory, so
it is on sys.path when the script runs)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]

# --- databases ---------------------------------------------------------------------------


def scratch_url(suffix: str, url: str | None = None) -> str:
    """DATABASE_URL (or `url`) with `_<suffix>` appended to the database name."""
    parsed = urlparse(url or os.environ["DATABASE_URL"])
    return urlunparse(parsed._replace(path=f"{parsed.path.rstrip('/')}_{suffix}"))


def database_recreate(url: str, admin_url: str) -> None:
    """Drop (with FORCE) and create the database of `url`, connected through `admin_url`."""
    _admin_execute(admin_url, url, create=True)


def database_drop(url: str, admin_url: str) -> None:
    _admin_execute(admin_url, url, create=False)


def _admin_execute(admin_url: str, url: str, *, create: bool) -> None:
    import psycopg2

    name = urlparse(url).path.lstrip("/")
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()


def pgbench(url: str, *args: str) -> str:
    """Run Debian's pgbench with `args` against the database of `url`; its stdout."""
    parsed = urlparse(url)
    env = {**os.environ, "PGPASSWORD": parsed.password or ""}
    base = [
        "pgbench",
        "-h",
        parsed.hostname or "127.0.0.1",
        "-p",
        str(parsed.port or 5432),
        "-U",
        parsed.username or "postgres",
    ]
    done = subprocess.run(
        [*base, *args, parsed.path.lstrip("/")], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def pgbench_tps(url: str, *, clients: int, seconds: int, threads: int = 2) -> float:
    """`pgbench -N` (simple update: no branch/teller hot rows) TPS, connection time excluded.
    The pgbench tables must exist (`pgbench(url, "-i", "-q", "-s", "10")`)."""
    out = pgbench(
        url, "-N", "-n", "-c", str(clients), "-j", str(min(threads, clients)), "-T", str(seconds)
    )
    match = re.search(r"tps = ([0-9.]+) \((?:without initial connection time|excluding)", out)
    return float(match.group(1))


# --- HTTP servers ------------------------------------------------------------------------


def server_env(url: str, **extra: str) -> dict:
    """The environment a benchmark's Plum server (and its own process) runs with: this one's,
    the scratch database `url`, production-like settings (DEBUG off, persistent connections)
    and a request-rate limit no benchmark reaches; `extra` adds or overrides."""
    return {
        **os.environ,
        "DATABASE_URL": url,
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench"),
        "DEBUG": "0",
        "STATIC_MANIFEST": "0",
        "PYTHONWARNINGS": "ignore::UserWarning",
        "DB_CONN_MAX_AGE": "60",
        "API_THROTTLE_RATE": "100000000/min",
        "DJANGO_SETTINGS_MODULE": "plum.settings",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, *, timeout: float = 60, process: subprocess.Popen | None = None) -> None:
    """Until `url` answers (any HTTP status), or RuntimeError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_gunicorn(
    env: dict,
    port: int,
    *,
    workers: int,
    threads: int = 1,
    worker_class: str = "gthread",
    timeout: int = 30,
    app: str = "plum.wsgi",
    ready_path: str = "/healthz",
) -> subprocess.Popen:
    """gunicorn serving `app` (Plum by default) on 127.0.0.1:`port`, in its own process group,
    with bench/ importable; returns once `ready_path` answers."""
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    process = subprocess.Popen(
        [
            gunicorn,
            app,
            "--pythonpath",
            str(Path(__file__).resolve().parent),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--backlog",
            "512",
            "--timeout",
            str(timeout),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}{ready_path}", process=process)
    except RuntimeError:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen, *, timeout: float = 10) -> None:
    """SIGTERM to the process group a `start_new_session=True` child leads, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=timeout)


# --- wrk ---------------------------------------------------------------------------------

# Every wrk script starts with this: per-thread ids for unique keys (`next_id()`), a count of
# answers other than 200/201 (the first three printed to stderr), and a last line of JSON.
LUA_COMMON = """
local counter = 0
local threads = {}
local tag = os.getenv("BENCH_TAG") or "r"

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + 7919 * (tid + 1))
end

function next_id()
  counter = counter + 1
  return tag .. "-" .. tid .. "-" .. counter
end

function done(summary, latency, requests)
  local codes = 0
  for _, thread in ipairs(threads) do codes = codes + thread:get("non2xx") end
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "max_ms": %f, ' ..
    '"errors_status": %d, "errors_connect": %d, "errors_timeout": %d, "errors_read": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3, codes,
    summary.errors.connect, summary.errors.timeout, summary.errors.read))
end

non2xx = 0
function response(status, headers, body)
  if status ~= 201 and status ~= 200 then
    non2xx = non2xx + 1
    if non2xx <= 3 then io.stderr:write(status .. " " .. body:sub(1, 300) .. "\\n") end
  end
end
"""


def wrk(
    script: str,
    url: str,
    connections: int,
    env: dict,
    seconds: int,
    *,
    threads: int = 2,
    headers: list[str] | None = None,
) -> dict:
    """Run /usr/bin/wrk with a Lua `script` (LUA_COMMON + a `request` function) for `seconds`;
    the JSON its `done` prints: requests, seconds, p50_ms, p99_ms, max_ms, errors_*."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    extra = [arg for header in headers or [] for arg in ("-H", header)]
    try:
        done = subprocess.run(
            [
                shutil.which("wrk") or "/usr/bin/wrk",
                "-t",
                str(min(threads, connections)),
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--timeout",
                "60s",
                *extra,
                "-s",
                f.name,
                url,
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(f.name)
    if done.stderr.strip():
        print(done.stderr.strip()[:2000], file=sys.stderr)
    return wrk_result(done.stdout)


def wrk_result(stdout: str) -> dict:
    """The JSON line LUA_COMMON's `done` writes last."""
    return json.loads(stdout.strip().splitlines()[-1])


# --- a signed-in browser -----------------------------------------------------------------


class Browser:
    """One HTTP session with cookies kept by hand (http.client: no dependency)."""

    def __init__(self, port: int):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method, path, body=None):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Referer"] = "http://127.0.0.1/"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, data

    def sign_in(self, username, password, path="/store/sign-in/"):
        _, page = self.request("GET", path)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
        body = urlencode({"csrfmiddlewaretoken": token, "username": username, "password": password})
        status, _ = self.request("POST", path, body)
        assert status == 302, f"sign-in of {username} at {path} answered {status}"

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


# --- a local delivery provider -----------------------------------------------------------


class ProviderStub(BaseHTTPRequestHandler):
    """The HTTP provider contract of orders.delivery.http: every POST is accepted (200 with a
    provider message id)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"id": uuid.uuid4().hex}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def provider_serve(port: int) -> None:
    """Serve ProviderStub on 127.0.0.1:`port` until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", port), ProviderStub)
    server.daemon_threads = True
    server.serve_forever()
