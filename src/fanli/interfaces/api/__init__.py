"""The HTTP API (FastAPI): a thin layer over the services. See ``app.create_app``."""
