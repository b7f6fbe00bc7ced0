"""The cold path: the audit format, its sinks and trail, verify, replay and the audit command line."""
