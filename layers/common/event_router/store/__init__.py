"""Postgres: the connection, the tables and their migrations, and every statement the functions run."""
