"""etl metrics reporter ``prometheus``: pushes each run's metrics to a Prometheus Pushgateway."""
