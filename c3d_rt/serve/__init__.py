"""``c3d-rt serve``: many streams through one batched engine, with a browser dashboard and Prometheus metrics.

Layers: :mod:`.streams` (one source each), :mod:`.batcher` (one engine call for
the windows due in every stream), :mod:`.events` and :mod:`.metrics` (getting
results out without blocking), :mod:`.server` (start, stop, add, remove) and
:mod:`.app` (HTTP), wired by :mod:`.main`. May import: core, engines, runtime.
"""

from .main import run_server, serve_async
from .server import ServeError, ServeSettings
from .streams import StreamSpec, StreamSpecError

__all__ = ["ServeError", "ServeSettings", "StreamSpec", "StreamSpecError", "run_server", "serve_async"]
