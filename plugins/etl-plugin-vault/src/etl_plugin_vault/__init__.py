"""etl-plugin-vault: the ``vault`` credential provider (HashiCorp Vault and OpenBao)."""
