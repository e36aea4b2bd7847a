"""What operators and deploys run: replay and the sweep, health and stats, migrations (SPEC §8-§10)."""
