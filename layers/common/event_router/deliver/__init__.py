"""A mirror change out (docs/connect-moodle.md): deliveries to Moodle and Zoho CRM, made idempotent and retried."""
