"""The BTEC event router's shared package: everything the Lambda functions have in common.

The folders follow a webhook through the system (README.md):

- ``verify/``   a webhook in: signatures and credentials, body shapes → ``messages.EventMessage``,
                the verifier (event log + module queue), the API Gateway adapter;
- ``process/``  a module queue's batch in: claim, apply the module's sync rules (``rules/``),
                complete, back off on failure;
- ``deliver/``  a delivery queue's batch in: make Moodle or Zoho CRM match the mirror;
- ``operate/``  what operators and deploys run: replay and the sweep, health and stats, migrations;
- ``store/``    Postgres: the connection, the tables, the migrations, and every statement.

At the top: the vocabulary (``contract``), the queue message (``messages``), SQS (``queues``),
settings, errors and observability.
"""
