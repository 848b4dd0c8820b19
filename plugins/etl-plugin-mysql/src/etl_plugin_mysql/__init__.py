"""etl plugin for MySQL and MariaDB: the ``mysql`` extractor and loader."""
