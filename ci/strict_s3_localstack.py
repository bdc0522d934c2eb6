"""Run LocalStack's runtime (`python -m localstack.runtime.main`) with one shutdown fix.

Started by ci/strict-s3.sh with LocalStack's venv Python. We use the hypercorn gateway
(it binds GATEWAY_LISTEN's 127.0.0.1; the default twisted one binds 0.0.0.0). Its
shutdown, in localstack-core 2026.3.0, calls ``loop.stop()`` from another thread after
the listening socket is closed, so the event loop can sleep in select() forever: the
process then ignored SIGINT/SIGTERM until SIGKILL (measured, about one stop in three).
Waking the loop with ``call_soon_threadsafe`` lets it exit in about a second.
"""

import contextlib
import runpy

from localstack.runtime.server import hypercorn as _hypercorn

_original_shutdown = _hypercorn.HypercornRuntimeServer.shutdown


def _shutdown(self: _hypercorn.HypercornRuntimeServer) -> None:
    _original_shutdown(self)
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        self.loop.call_soon_threadsafe(self.loop.stop)


_hypercorn.HypercornRuntimeServer.shutdown = _shutdown  # type: ignore[method-assign]

if __name__ == "__main__":
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
