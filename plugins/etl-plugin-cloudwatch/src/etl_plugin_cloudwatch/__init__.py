"""etl metrics reporter ``cloudwatch``: sends each run's metrics with ``put_metric_data``."""
