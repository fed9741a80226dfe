"""The outage of issue #25 as two small apps, run under real servers by the tests.

A named pool ``db`` of ``$OUTAGE_CAPACITY`` slots whose queue waits at most
``$OUTAGE_MAX_WAIT`` s; its function hangs (as a stopped database's driver does)
until ``POST /release``. ``GET /query`` awaits it. Not a test module:
``test_web_outage.py`` serves ``_outage_apps:fastapi_app`` with uvicorn and
``_outage_apps:flask_app`` with gunicorn, one worker each, so the gate is shared.
"""

from __future__ import annotations

import os
import threading

import flask
from fastapi import FastAPI

import syncbridge
import syncbridge.fastapi
from syncbridge.flask import SyncBridge

# Given by the test (the test process never imports this module: creating the
# apps starts the Flask extension's loop watch in the importing process).
CAPACITY = int(os.environ["OUTAGE_CAPACITY"])
MAX_WAIT = float(os.environ["OUTAGE_MAX_WAIT"])
POOLS: dict[str, syncbridge.PoolConfig] = {
    "db": {"capacity": CAPACITY, "max_wait": MAX_WAIT}
}
GATE_TIMEOUT = 60.0
"""The longest a call hangs if the test never releases it (it always does)."""

released = threading.Event()


@syncbridge.to_async(pool="db")
def query() -> str:
    """The database call: blocked while the database is down."""
    released.wait(GATE_TIMEOUT)
    return "ok"


# -- FastAPI (uvicorn) -------------------------------------------------------------

fastapi_app = FastAPI()
syncbridge.fastapi.install(fastapi_app, pools=POOLS)


@fastapi_app.get("/query")
async def fastapi_query() -> dict[str, str]:
    return {"result": await query()}


@fastapi_app.post("/release")
async def fastapi_release() -> dict[str, bool]:
    released.set()
    return {"released": True}


# -- Flask (gunicorn) ---------------------------------------------------------------

flask_app = flask.Flask(__name__)
flask_app.config["SYNCBRIDGE_POOLS"] = POOLS
SyncBridge(flask_app)


@flask_app.get("/query")
async def flask_query() -> dict[str, str]:
    return {"result": await query()}


@flask_app.post("/release")
def flask_release() -> dict[str, bool]:
    released.set()
    return {"released": True}
