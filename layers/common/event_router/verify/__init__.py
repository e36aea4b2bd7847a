"""A webhook in: authenticate it, turn its body into an ``EventMessage``, log it, queue it (SPEC §4-§6)."""
