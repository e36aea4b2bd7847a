"""The operators' console (docs/operate.md, "The console"): what happened to a student, what is
stuck, and one click to fix it. ``pages.py`` serves it, ``session.py`` says who is asking and how
they sign in, ``authorizer.py`` lets signed-in users through API Gateway, ``wiring.py`` builds it
from the container's settings."""
