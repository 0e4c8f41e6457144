"""Orders, uploads and deliveries: see the orders and delivery issues. Nothing is built here yet."""
