"""The harvest job: polite fetching, resumable state in SQLite, and the orchestration of both."""
