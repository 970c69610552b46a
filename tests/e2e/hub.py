"""A small client for the local hub: REST with the test service's token, a browser-like
session (cookies, XSRF) for the real login and spawn pages, and a kernel over the websocket."""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import batch, diagnosis


@dataclass
class Response:
    status: int
    body: str
    headers: dict

    def json(self):
        return json.loads(self.body)


class Hub:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, data=None, token: str | None = "default",
                timeout: float = 60) -> Response:
        body = json.dumps(data).encode() if data is not None else None
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if token:
            req.add_header("Authorization", f"token {self.token if token == 'default' else token}")
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(req, timeout=timeout) as r:
                return Response(r.status, r.read().decode(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(), dict(e.headers))

    def user(self, name: str) -> dict:
        return self.request("GET", f"/hub/api/users/{name}").json()

    def server(self, name: str) -> dict | None:
        return self.user(name)["servers"].get("")

    def spawn(self, name: str, options: dict, timeout: float = 150) -> tuple[Response, list[str]]:
        """Start a server and follow its progress stream; returns (response, messages)."""
        r = self.request("POST", f"/hub/api/users/{name}/server", options)
        if r.status not in (201, 202):
            return r, []
        messages = self.progress(name, timeout)
        if not (self.server(name) or {}).get("ready"):
            messages.append(diagnosis.record(f"spawn of {name} {options}", name))
        return r, messages

    def progress(self, name: str, timeout: float) -> list[str]:
        req = urllib.request.Request(f"{self.url}/hub/api/users/{name}/server/progress")
        req.add_header("Authorization", f"token {self.token}")
        messages = []
        with urllib.request.urlopen(req, timeout=timeout) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    messages.append(event.get("message", ""))
                    if event.get("ready") or event.get("failed"):
                        break
        return messages

    def stop(self, name: str, timeout: float = 60) -> None:
        """Stop the server and wait until the hub and the batch system both say it ended
        (PBS keeps a deleted job running for seconds after the hub gave up waiting)."""
        self.request("DELETE", f"/hub/api/users/{name}/server")
        deadline = time.monotonic() + timeout
        while self.server(name) and time.monotonic() < deadline:
            time.sleep(0.5)
        while any(j.name == "jupyter-dask-mpi-lx" for j in batch.current().jobs(name)) \
                and time.monotonic() < deadline:
            time.sleep(0.5)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browser:
    """Cookies and XSRF as a browser does, for the hub's HTML pages."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _xsrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "_xsrf"), "")

    def get(self, path: str) -> Response:
        try:
            with self.opener.open(self.url + path, timeout=60) as r:
                return Response(r.status, r.read().decode(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(), dict(e.headers))

    def post_form(self, path: str, fields: dict) -> Response:
        data = urllib.parse.urlencode({**fields, "_xsrf": self._xsrf()}, doseq=True).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        try:
            with self.opener.open(req, timeout=120) as r:
                return Response(r.status, r.read().decode(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read().decode(), dict(e.headers))

    def login(self, user: str, password: str) -> Response:
        self.get("/hub/login")
        return self.post_form("/hub/login?next=", {"username": user, "password": password})


def error_text(html: str) -> str:
    """The visible text of the hub's error box on a page."""
    text = re.sub(r"<[^>]+>", " ", html)
    return re.sub(r"\s+", " ", text)


def execute_request(code: str, msg_id: str, store_history: bool = False) -> str:
    """A Jupyter ``execute_request`` message for ``code`` on the shell channel."""
    return json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": store_history,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}})


def spawned_server(hub: Hub, user: str, options: dict):
    """Generator for a module fixture: ``user``'s server with ``options`` (no jobs of theirs
    left before or after); yields its batch job id."""
    hub.stop(user)
    batch.current().cancel_user(user)
    response, messages = hub.spawn(user, options)
    assert response.status in (201, 202), response.body
    state = hub.server(user)
    assert state and state["ready"], (state, messages)
    yield {"job": jobs_of(user)[0].split()[0]}
    hub.stop(user)
    batch.current().cancel_user(user)


async def _run_code(ws_url: str, token: str, code: str, timeout: float) -> dict:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    req = HTTPRequest(ws_url, headers={"Authorization": f"token {token}"})
    ws = await websocket_connect(req)
    msg_id = uuid.uuid4().hex
    ws.write_message(execute_request(code, msg_id))
    out = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), timeout=max(1, deadline - time.monotonic()))
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out[msg["content"]["name"]] += msg["content"]["text"]
        elif kind == "error":
            out["error"] = "\n".join(msg["content"]["traceback"])
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    ws.close()
    return out


def run_in_kernel(hub: Hub, user: str, code: str, timeout: float = 120) -> dict:
    """Start a kernel in the user's server, run ``code``, return its stdout/stderr/error."""
    r = hub.request("POST", f"/user/{user}/api/kernels", {"name": "python3"})
    assert r.status == 201, r.body
    kernel = r.json()["id"]
    ws_url = hub.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel}/channels"
    try:  # in a thread of its own: the caller may be inside an event loop (Playwright's)
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _run_code(ws_url, hub.token, code, timeout)).result()
    finally:
        hub.request("DELETE", f"/user/{user}/api/kernels/{kernel}")


def run_json_in_kernel(hub: Hub, user: str, code: str, timeout: float = 120) -> dict:
    """Run ``code`` (which prints one ``JSON {...}`` line) in a kernel; return that object."""
    out = run_in_kernel(hub, user, code, timeout)
    assert out["error"] is None, out["error"] + out["stderr"]
    line = [x for x in out["stdout"].splitlines() if x.startswith("JSON ")]
    assert line, out
    return json.loads(line[-1][5:])


def user_processes(user: str) -> list[str]:
    out = subprocess.run(["ps", "-u", user, "-o", "pid=,args="], capture_output=True, text=True)
    return [x.strip() for x in out.stdout.splitlines() if x.strip()]


def jobs_of(user: str) -> list[str]:
    """``user``'s unfinished jobs on the stack's batch system, "<id> <STATE>" each; a failed
    query (the controller busy) is asked again, never read as "no jobs"."""
    return [job.line() for job in batch.current().jobs(user)]


def assert_nothing_left(user: str, timeout: float = 30) -> None:
    """No batch job, no process and no job file of ``user`` remains (within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while (jobs_of(user) or user_processes(user)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert jobs_of(user) == []
    assert user_processes(user) == []
    leftovers = [p.name for p in Path("/tmp").glob("dask-mpi-lx-*") if p.owner() == user]
    assert leftovers == []
