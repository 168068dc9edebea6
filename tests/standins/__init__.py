"""Stand-ins for the demo and the end-to-end tests: OpenAI-compatible model servers and a traffic
generator. Not part of the product; `rollout demo` runs them as `python -m tests.standins.<module>`."""
