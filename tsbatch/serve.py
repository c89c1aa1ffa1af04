"""Run a local TorchServe with the demo model (needs ``pip install 'tsbatch[serve]'`` and Java 17).

    from tsbatch import serve
    server = serve.start(serve.ServeSettings(run_dir=Path(".tsbatch/nb")))
    ...
    serve.stop(server.run_dir)

The same as ``tsbatch serve start|status|stop`` on the command line.
``ServeSettings(demo_versions=("1.0", "2.0"))`` serves two versions of the
demo model side by side, the first the default.  The demo model is trained
once and kept in the cache folder (``TSBATCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/tsbatch``, else ``~/.cache/tsbatch``).
``start_kserve`` serves the same model on KServe's ModelServer instead, over
KServe v1 and the Open Inference Protocol (v2), from a Python that has kserve.
"""

from tsbatch._serve.kserve import KServeServer, start_kserve
from tsbatch._serve.local import LocalServer, start, status, stop
from tsbatch._serve.settings import DEFAULT_RUN_DIR, ServeSettings

__all__ = [
    "DEFAULT_RUN_DIR",
    "KServeServer",
    "LocalServer",
    "ServeSettings",
    "start",
    "start_kserve",
    "status",
    "stop",
]
