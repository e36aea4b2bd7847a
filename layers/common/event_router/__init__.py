"""Event router shared package: everything the Lambda functions have in common.

The flow of SPEC §2 maps onto the modules here: ``signatures`` and ``payloads``
verify and normalise a webhook, ``eventlog`` records it, ``queues`` routes it to
its module's queue, and ``ingest`` ties those steps together for the verifiers.
"""
