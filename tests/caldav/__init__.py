"""CalDAV provider tests against real Radicale and Xandikos servers."""
