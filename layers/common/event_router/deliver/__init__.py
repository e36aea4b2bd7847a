"""A mirror change out (SPEC §11): deliveries to Moodle and Zoho CRM, made idempotent and retried."""
