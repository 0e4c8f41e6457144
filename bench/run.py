"""`make bench`: run every bench/bench_*.py against the database in DATABASE_URL (Postgres)
and the Redis in REDIS_URL (the broker of the benchmarks that run a Celery worker) and print
each one's table. Figures are recorded by hand in docs/performance.md."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Benchmarks run on Postgres: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    if not os.environ.get("REDIS_URL", "").startswith("redis"):
        print(
            "Benchmarks need Redis (the Celery broker): set REDIS_URL=redis://...", file=sys.stderr
        )
        return 2
    scripts = sorted(HERE.glob("bench_*.py"))
    if not scripts:
        print("No benchmarks yet.")
        return 0
    failed = 0
    for script in scripts:
        print(f"\n## {script.stem}")
        failed |= subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
    return failed


if __name__ == "__main__":
    sys.exit(main())
