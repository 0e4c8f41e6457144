"""Ops portal and complaint tickets: see the support issue. Nothing is built here yet."""
