"""`rill serve`: a local web page to watch an image develop (rill.app.serve.app has the routes, guard.py the
security checks, jobs.py the bounded job queue, catalog.py the models it may run)."""

from .app import create_app, parse_request
from .settings import Settings

__all__ = ["create_app", "parse_request", "Settings"]
