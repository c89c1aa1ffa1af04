"""Run a local TorchServe with the demo model (needs ``pip install 'tsbatch[serve]'`` and Java 17).

    from tsbatch import serve
    server = serve.start(serve.ServeSettings(run_dir=Path(".tsbatch/nb")))
    ...
    serve.stop(server.run_dir)

The same as ``tsbatch serve start|status|stop`` on the command line.
"""

from tsbatch._serve.local import DEFAULT_RUN_DIR, LocalServer, ServeSettings, start, status, stop

__all__ = ["DEFAULT_RUN_DIR", "LocalServer", "ServeSettings", "start", "status", "stop"]
