"""etl connector for Apache Kafka."""
