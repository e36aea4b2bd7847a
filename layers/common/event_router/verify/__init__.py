"""A webhook in: authenticate it, turn its body into an ``EventMessage``, log it, queue it (docs/api.md)."""
