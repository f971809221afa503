"""The HTTP API of ``c3d-rt serve`` (aiohttp): dashboard, MJPEG, JSON, Server-Sent Events, Prometheus.

aiohttp is one dependency that is both the server and the webhook's client, and
it streams (MJPEG, SSE) without a worker model on top. Every handler only reads
the streams' state or hands work to a thread; nothing here runs the model.

With a token every endpoint except ``/healthz`` needs it: an ``Authorization:
Bearer`` header, or the cookie set when the dashboard is opened once as
``/?token=...``. Without a token the server only listens on loopback, and a
web page must not be able to drive it from the user's browser: requests whose
``Host`` is not a loopback name (DNS rebinding) and cross-origin changes are
refused, and ``POST`` needs ``application/json`` (a type a page cannot send
to another origin without a CORS preflight, which this server never grants).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import json
import time
from importlib import resources
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .server import Server, is_loopback
from .streams import StreamSpec, StreamSpecError, check_remote_source

SERVER_KEY = web.AppKey("server", Server)
COOKIE = "c3d_rt_token"
MAX_REQUEST_BYTES = 64 * 1024
SSE_KEEPALIVE_S = 15.0
BOUNDARY = "c3drtframe"
MAX_VIEWERS = 32  # MJPEG and SSE clients each, at most


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def _token_of(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE, "") or (request.query.get("token", "") if request.path == "/" else "")


def _refusal(request: web.Request) -> web.Response | None:
    """Why this request may not reach a handler, as the response to send; None when it may."""
    settings = request.app[SERVER_KEY].settings
    if settings.token:
        if request.path != "/healthz" and not hmac.compare_digest(_token_of(request).encode(),
                                                                   settings.token.encode()):
            return error(401, "this server needs its token: send 'Authorization: Bearer TOKEN', or open the "
                              "dashboard once as /?token=TOKEN")
    elif not is_loopback(urlsplit("//" + request.host).hostname or ""):
        return error(403, f"Host {request.host!r} is not this machine's loopback address; a server without a "
                          "token answers only requests for localhost or 127.0.0.1")
    origin = request.headers.get("Origin")
    if request.method not in ("GET", "HEAD", "OPTIONS") and origin and urlsplit(origin).netloc != request.host:
        return error(403, f"cross-origin {request.method} from {origin} refused")
    return None


@web.middleware
async def guard_middleware(request: web.Request, handler):
    """Access rules first; then aiohttp's own errors (404, 405, 413) as JSON like ours."""
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.text or exc.reason)


@functools.cache
def _dashboard_html() -> str:
    return resources.files("c3d_rt.serve").joinpath("dashboard.html").read_text(encoding="utf-8")


async def dashboard(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    if server.settings.token and request.query.get("token"):  # set the cookie, then drop the token from the URL
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, request.query["token"], httponly=True, samesite="Strict", path="/")
        return response
    return web.Response(text=_dashboard_html(), content_type="text/html", headers={"Cache-Control": "no-store"})


async def list_streams(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    engine = server.engine
    return web.json_response({
        "engine": None if engine is None else {"key": engine.key, "model": str(engine.path),
                                               "labels": engine.labels},
        "max_batch": server.settings.max_batch,
        "streams": [s.snapshot() for s in server.stream_list()]})


async def get_stream(request: web.Request) -> web.Response:
    stream = request.app[SERVER_KEY].streams.get(request.match_info["name"])
    if stream is None:
        return error(404, f"no stream named {request.match_info['name']!r}; GET /api/streams lists them")
    return web.json_response(stream.snapshot())


async def add_stream(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    if request.content_type != "application/json":
        return error(415, f"expected Content-Type: application/json, got {request.content_type or 'none'}")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, 'expected a JSON object such as {"name": "door", "source": "rtsp://10.0.0.5/stream"}')
    try:
        spec = StreamSpec.from_dict(body, server.settings.stream_defaults)
        source = check_remote_source(spec.source, server.settings.media_root)
        stream = server.add_stream(dataclasses.replace(spec, source=source))
    except PermissionError as exc:
        return error(403, str(exc))
    except FileNotFoundError as exc:
        return error(404, str(exc))
    except StreamSpecError as exc:
        return error(exc.status, str(exc))
    return web.json_response(stream.snapshot(), status=201, headers={"Location": f"/api/streams/{spec.name}"})


async def delete_stream(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    name = request.match_info["name"]
    removed = await asyncio.get_running_loop().run_in_executor(None, server.remove_stream, name)
    if not removed:
        return error(404, f"no stream named {name!r}; GET /api/streams lists them")
    return web.Response(status=204)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: one ``prediction`` event per prediction of any stream."""
    server = request.app[SERVER_KEY]
    if len(server.hub.clients) >= MAX_VIEWERS:
        return error(503, f"{MAX_VIEWERS} clients already follow the events; try again later")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = server.hub.subscribe()
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
            except asyncio.TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            lost, queue.lost = queue.lost, 0
            if lost:
                await response.write(f"event: lost\ndata: {json.dumps({'lost': lost})}\n\n".encode())
            await response.write(f"event: prediction\ndata: {json.dumps(event)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        server.hub.unsubscribe(queue)
    return response


async def video(request: web.Request) -> web.StreamResponse:
    """The stream's newest frame, annotated, as MJPEG at up to ``--mjpeg-fps`` (only while someone watches)."""
    server = request.app[SERVER_KEY]
    name = request.match_info["name"]
    if name not in server.streams:
        return error(404, f"no stream named {name!r}")
    if server.viewers >= MAX_VIEWERS:
        return error(503, f"{MAX_VIEWERS} clients already watch videos; try again later, or poll frame.jpg")
    response = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    server.viewers += 1
    try:
        await _send_frames(request, response, name)
    finally:
        server.viewers -= 1
    return response


async def _send_frames(request: web.Request, response: web.StreamResponse, name: str) -> None:
    server = request.app[SERVER_KEY]
    loop = asyncio.get_running_loop()
    period = 1.0 / server.settings.mjpeg_fps
    last_frame = -1
    try:
        while not server.stopping.is_set():
            stream = server.streams.get(name)
            if stream is None:
                break
            started = time.perf_counter()
            latest = stream.latest_frame
            if latest is not None and latest[0] != last_frame:
                encoded = await loop.run_in_executor(None, stream.annotated_jpeg)
                if encoded is not None:
                    last_frame, data = encoded
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    await response.write(head.encode() + data + b"\r\n")
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - started)))
    except (ConnectionResetError, asyncio.CancelledError):
        pass


async def frame(request: web.Request) -> web.Response:
    """The newest annotated frame as one JPEG (what the dashboard polls beyond the browser's connection limit)."""
    stream = request.app[SERVER_KEY].streams.get(request.match_info["name"])
    if stream is None:
        return error(404, f"no stream named {request.match_info['name']!r}")
    encoded = await asyncio.get_running_loop().run_in_executor(None, stream.annotated_jpeg)
    if encoded is None:
        return error(404, f"stream {stream.name!r} has no frame yet (state: {stream.state})")
    return web.Response(body=encoded[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    server = request.app[SERVER_KEY]
    body = await asyncio.get_running_loop().run_in_executor(None, generate_latest, server.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    ready, why = request.app[SERVER_KEY].readiness()
    return web.json_response({"ready": ready, "reason": why}, status=200 if ready else 503)


def build_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[guard_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[SERVER_KEY] = server
    app.router.add_get("/", dashboard)
    app.router.add_get("/api/streams", list_streams)
    app.router.add_post("/api/streams", add_stream)
    app.router.add_get("/api/streams/{name}", get_stream)
    app.router.add_delete("/api/streams/{name}", delete_stream)
    app.router.add_get("/api/events", events)
    app.router.add_get("/streams/{name}/video.mjpg", video)
    app.router.add_get("/streams/{name}/frame.jpg", frame)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
