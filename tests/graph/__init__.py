"""Microsoft 365 (Graph) provider tests against the strict Graph fake."""
