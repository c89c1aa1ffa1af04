"""Run a local TorchServe with the demo model (needs ``pip install 'tsbatch[serve]'`` and Java 17).

    from tsbatch import serve
    server = serve.start(serve.ServeSettings(run_dir=Path(".tsbatch/nb")))
    ...
    serve.stop(server.run_dir)

The same as ``tsbatch serve start|status|stop`` on the command line.
"""

from tsbatch._serve.local import LocalServer, start, status, stop
from tsbatch._serve.settings import DEFAULT_RUN_DIR, ServeSettings

__all__ = ["DEFAULT_RUN_DIR", "LocalServer", "ServeSettings", "start", "status", "stop"]
