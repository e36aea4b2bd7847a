"""A module queue's batch in: claim its events, apply each module's sync rules, complete them (docs/operate.md)."""
