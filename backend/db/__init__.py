"""Carnet's PostgreSQL database backend: Django's, with psycopg's C timestamp loader (``base``)."""
