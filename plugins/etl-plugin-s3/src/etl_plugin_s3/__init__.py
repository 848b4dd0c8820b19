"""etl extractor and loader for Amazon S3 and S3-compatible object stores."""
