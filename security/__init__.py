"""Security of the deployment (issue 12): broker accounts and ACL, TLS, InfluxDB accounts."""
