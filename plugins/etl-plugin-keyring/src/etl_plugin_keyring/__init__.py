"""etl-plugin-keyring: the ``keyring`` credential provider (the operating system's keyring)."""
