"""Plum's settings with the floor benchmark's URL conf (bench/bench_http_floor.py)."""

from plum.settings import *  # noqa: F403

ROOT_URLCONF = "floor.urls"
