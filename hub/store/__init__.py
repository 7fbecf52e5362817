"""The SQLAlchemy adapter: tables, engine, unit of work and repositories."""
