"""The member storefront (/store/): server-rendered pages that call the orders, wallets and
campaigns services and selectors. A member sees only their own wallet and orders."""
