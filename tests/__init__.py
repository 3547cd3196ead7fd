"""calhub's test suite: one folder per area; tests/fakes holds the protocol fakes."""
