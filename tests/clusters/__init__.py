"""Database clusters of the tests' own, started and stopped by pid, to fail over."""
