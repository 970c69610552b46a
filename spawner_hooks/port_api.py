"""A `/hub/api/batchspawner` handler that accepts a port and nothing else.

batchspawner 1.3.0's handler sets *any* spawner attribute named in the request body, so a
user holding their own server's token could set ``exec_prefix`` or ``batch_cancel_cmd``,
commands the hub later runs as its own user (verified on this stack). This one accepts only
``{"port": <1-65535>}`` and answers 400 to anything else, leaving the spawner unchanged; and
only while the server is starting (409 once it runs, or after it stopped).
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import apihandlers
from jupyterhub.apihandlers import APIHandler
from tornado import web

ROUTE = r"/api/batchspawner"


class PortOnlyAPIHandler(APIHandler):
    @web.authenticated
    def post(self) -> None:
        user = self.current_user
        token = self.get_auth_token()
        spawner = next((s for s in user.spawners.values() if s.api_token == token), None)
        if spawner is None:
            raise web.HTTPError(403, "this token belongs to no server of this user")
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        try:
            spawner.port = checked_port(spawner, body)
        except web.HTTPError:
            keys = sorted(map(str, body))[:5] if isinstance(body, dict) else type(body).__name__
            self.log.warning("refused batchspawner API call for %s with %s", user.name, keys)
            raise
        self.set_status(201)
        self.finish(json.dumps({"message": "port set"}))


def checked_port(spawner: Any, body: Any) -> int:
    """The port in ``body``, if it is ``{"port": <1-65535>}`` and ``spawner`` is starting;
    else an HTTP 400 (bad body) or 409 (not starting: running, stopping or stopped)."""
    if not isinstance(body, dict) or set(body) != {"port"}:
        raise web.HTTPError(400, 'only {"port": <1-65535>} is accepted')
    port = body["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise web.HTTPError(400, "port must be an integer from 1 to 65535")
    # JupyterHub sets _start_pending from before apply_user_options until start() returns;
    # batchspawner's start() waits for this very request within that window
    if not getattr(spawner, "_start_pending", False):
        raise web.HTTPError(409, "the server is not starting: a port is accepted only while "
                            "it starts")
    return port


def install() -> None:
    """Replace batchspawner's handler (registered when batchspawner is imported) with ours."""
    import batchspawner.api  # noqa: F401  (ensures its registration happened first)

    handlers = apihandlers.default_handlers
    handlers[:] = [h for h in handlers if h[0] != ROUTE]
    handlers.append((ROUTE, PortOnlyAPIHandler))
