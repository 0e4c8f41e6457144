"""Points wallets and the double-entry ledger: see the wallets issue. Nothing is built here yet."""
