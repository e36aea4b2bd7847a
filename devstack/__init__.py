"""Development tooling: the local stack, embedded Postgres, sample events. Never deployed."""
