"""IPA upload helpers: decoding, CSV/JSON parsing and row validation as plain functions (no
serializer per row), and the scoped reads. Every write is in `orders.services.uploads`."""
