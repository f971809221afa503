"""A tiny MJPEG-over-HTTP camera (multipart/x-mixed-replace, as IP cameras serve it) on 127.0.0.1."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import cv2
import numpy as np

BOUNDARY = "c3drtframe"


class MjpegServer:
    """Serves ``frames`` at ``fps``: the first connection is cut after ``cut_after`` frames if given, and
    connections after ``max_connections`` are refused (503), as from a camera that went away."""

    def __init__(self, frames: list[np.ndarray], fps: float = 50.0, cut_after: int | None = None,
                 max_connections: int = 2) -> None:
        self.jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes() for f in frames]
        self.fps, self.cut_after, self.max_connections, self.connections = fps, cut_after, max_connections, 0
        self.killed = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                server.connections += 1
                if server.connections > server.max_connections:
                    self.send_error(503, "camera gone")
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                limit = server.cut_after if server.connections == 1 and server.cut_after else len(server.jpegs)
                for data in server.jpegs[:limit]:
                    if server.killed.is_set():
                        return
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    try:
                        self.wfile.write(head.encode() + data + b"\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    time.sleep(1 / server.fps)

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def __enter__(self) -> "MjpegServer":
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def kill(self) -> None:
        """The camera goes away: open connections are cut and new ones refused."""
        self.killed.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __exit__(self, *exc) -> None:
        if not self.killed.is_set():
            self.kill()
