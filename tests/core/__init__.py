"""Hub core tests: config, store, rules, admin API, feeds, command line."""
