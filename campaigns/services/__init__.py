"""Campaign writes: `campaigns` (catalog and campaign set-up), `codes` (generation and
import), `vouchers` (the voucher lifecycle)."""
