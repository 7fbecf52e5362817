"""The pure core: canonical model, ticket IDs, apply, the mapping engine, the connector port, signatures.

Nothing here does I/O or imports SQLAlchemy, HTTP clients, Celery or structlog (tests/unit/test_layers.py).
"""
