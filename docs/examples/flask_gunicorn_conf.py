"""How-to: gunicorn settings that close the app's shared client as a worker exits.

Run ``gunicorn -c flask_gunicorn_conf.py flask_shared_client:app``.
"""

from __future__ import annotations

from typing import Any

worker_class = "gthread"
threads = 8


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn calls this in the worker, as it exits, before the bridge closes."""
    from flask_shared_client import close_client  # the app module, already loaded

    close_client()
    worker.log.info("closed the shared client")
