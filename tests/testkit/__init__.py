"""Tests of hub/testing (memory provider, conformance suite) and plugin loading."""
