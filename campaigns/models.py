"""Catalog, campaigns and voucher codes: see the campaigns issue. Nothing is built here yet."""
