"""Sync engine tests: reconcile rules, executor, scheduler, fault injection."""
