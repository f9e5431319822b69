"""Real database clusters for the failover tests, started on free ports of their own and stopped by pid."""
