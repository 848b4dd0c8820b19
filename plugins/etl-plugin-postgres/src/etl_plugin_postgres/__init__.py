"""etl-plugin-postgres: the ``postgres`` extractor and loader (see README.md)."""
