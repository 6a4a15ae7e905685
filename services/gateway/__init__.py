"""The gateway: the REST API (FastAPI, OpenAPI at /docs), Server-Sent Events and the GUI."""
