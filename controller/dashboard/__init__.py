"""The dashboard: read-only web pages served by the controller (`rollout dashboard`)."""
