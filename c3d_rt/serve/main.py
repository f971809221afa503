"""Starting and stopping ``c3d-rt serve``: the server's state, the HTTP app on a socket, signals, and the exit status."""

from __future__ import annotations

import asyncio
import signal
from typing import Callable

from aiohttp import web

from .app import build_app
from .server import ServeError, Server, ServeSettings, check_settings


async def serve_async(settings: ServeSettings, log: Callable[[str], None] = print) -> int:
    """Run until SIGINT/SIGTERM (or the engine fails); returns the exit status."""
    loop = asyncio.get_running_loop()
    server = Server(settings, loop, log)
    for sig in (signal.SIGINT, signal.SIGTERM):  # before binding: a signal from now on stops cleanly
        try:
            loop.add_signal_handler(sig, server.stopping.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or not a Unix loop
            pass
    runner = web.AppRunner(build_app(server), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ServeError(f"cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); pick another "
                         "--port or stop what uses it") from None
    port = runner.addresses[0][1] if runner.addresses else settings.port
    url = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}:{port}/"
    log(f"listening on {url} (dashboard; API under /api, metrics at /metrics)")
    status = 0
    try:
        if await _load_unless_stopped(server, loop):
            for spec in settings.streams:
                server.add_stream(spec)
            log(f"serving {len(settings.streams)} stream(s); Ctrl-C stops")
            await server.stopping.wait()
        status = 1 if server.failure else 0
    finally:
        server.hub.close()
        if server.webhook is not None:
            await server.webhook.close()
        await loop.run_in_executor(None, server.shutdown)
        await runner.cleanup()
        log("stopped")
    return status


async def _load_unless_stopped(server: Server, loop: asyncio.AbstractEventLoop) -> bool:
    """Load the engine in a thread; False when a signal came first (the loading thread is left to finish)."""
    loading = loop.run_in_executor(None, server.load_engine)
    stopped = asyncio.ensure_future(server.stopping.wait())
    done, _ = await asyncio.wait({loading, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if loading in done:
        stopped.cancel()
        loading.result()  # raises what loading raised
        return True
    loading.add_done_callback(lambda f: f.exception())  # retrieved: no "never retrieved" warning
    return False


def run_server(settings: ServeSettings, log: Callable[[str], None] = print) -> int:
    check_settings(settings)
    return asyncio.run(serve_async(settings, log))
