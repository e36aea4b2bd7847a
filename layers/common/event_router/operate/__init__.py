"""What operators and deploys run: replay and the sweep, health and stats, migrations (docs/operate.md)."""
