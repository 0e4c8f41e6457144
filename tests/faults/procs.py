"""Real processes the fault tests start, stop and kill: a private redis-server on a free port
(never the shared one), a Celery worker and gunicorn, each in its own process group so that a
SIGKILL takes its children (the prefork pool, gunicorn's workers) with it."""

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.stubs import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def kill_group(process: subprocess.Popen | None, sig: int = signal.SIGKILL) -> None:
    """`sig` to the process group a `start_new_session=True` child leads; waits for it."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class PrivateRedis:
    """A redis-server of this test alone, on a free port, without persistence: stopping it
    loses whatever was queued in it, as a crashed broker would."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
        )
        return done.stdout.strip() == "PONG"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not wait_until(self._ping, timeout=15):
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        kill_group(self.process, signal.SIGKILL)
        self.process = None


def start_worker(env: dict, *, concurrency: int = 2) -> subprocess.Popen:
    """A real `celery worker` (prefork pool) in its own process group."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "plum",
            "worker",
            "--pool=prefork",
            f"--concurrency={concurrency}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def start_gunicorn(env: dict, *, log_path: Path, workers: int = 2, threads: int = 4) -> tuple:
    """gunicorn serving Plum on a free port, its output in `log_path`; returns
    (process, base_url) once /healthz answers."""
    port = free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - the child keeps it open
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent)) or "gunicorn"
    process = subprocess.Popen(
        [
            gunicorn,
            "plum.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310 - local
                return True
        except OSError:
            return False

    if not wait_until(up, timeout=60, interval=0.3):
        kill_group(process)
        raise RuntimeError("gunicorn did not answer /healthz")
    return process, base
