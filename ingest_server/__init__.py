"""Ingestion server: MQTT to TimescaleDB/PostgreSQL, KPIs and verifiable evidence."""
