"""What a local TorchServe loads: the model archives, and the config file that lists them.

The demo model can be served in several versions side by side, each from an
archive of its own (``demo.mar`` for 1.0, ``demo-2.0.mar`` for 2.0), all
registered under the one name ``demo``.  The first version of
``ServeSettings.demo_versions`` is the default, the one that answers
``/predictions/demo``: TorchServe makes the first version it loads the
default (at start it does not go by ``defaultVersion``), so the config
loads them in that order.  The archives come
from the cache of built demo models (:mod:`tsbatch._demo.cache`): the model
is trained only when no run before has trained the same thing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

from tsbatch._demo.archive import DEMO_MODEL_NAME, DEMO_MODEL_VERSION
from tsbatch._demo.cache import demo_archive
from tsbatch._errors import LocalServerError
from tsbatch._serve.settings import HOST, ServeSettings

#: Seconds TorchServe gives the model to answer one request.
RESPONSE_TIMEOUT = 120


def model_archives(settings: ServeSettings, say: Callable[[str], None]) -> dict[str, Path]:
    """The archive of each version to serve, in ``settings.demo_versions`` order (the default first).

    All of them are in one folder, the model store TorchServe is given.
    """
    if settings.model_archive is not None:
        if not settings.model_archive.is_file():
            raise LocalServerError(
                f"model archive {settings.model_archive} not found: "
                "build one with torch-model-archiver or leave --model-archive out to use the demo model"
            )
        return {DEMO_MODEL_VERSION: settings.model_archive.resolve()}
    store = settings.run_dir.resolve() / "model-store"
    return {
        version: demo_archive(store, version, settings.training_data, say=say).path
        for version in settings.demo_versions
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def config_text(settings: ServeSettings, archives: dict[str, Path]) -> str:
    """TorchServe's ``config.properties``: loopback addresses, and every version of ``archives`` loaded."""
    default = next(iter(archives))
    versions = {
        version: {
            "defaultVersion": version == default,
            "marName": archive.name,
            "minWorkers": settings.workers,
            "maxWorkers": settings.workers,
            "batchSize": settings.batch_size,
            "maxBatchDelay": settings.max_batch_delay_ms,
            "responseTimeout": RESPONSE_TIMEOUT,
        }
        for version, archive in archives.items()
    }
    lines = [
        f"inference_address=http://{HOST}:{settings.inference_port}",
        f"management_address=http://{HOST}:{settings.management_port}",
        f"metrics_address=http://{HOST}:{settings.metrics_port}",
        # gRPC cannot be turned off; give it free loopback ports so that
        # several servers can run side by side.
        f"grpc_inference_address={HOST}",
        f"grpc_inference_port={_free_port()}",
        f"grpc_management_address={HOST}",
        f"grpc_management_port={_free_port()}",
        f"model_store={archives[default].parent}",
        f"load_models={','.join(archive.name for archive in archives.values())}",
        f"models={json.dumps({DEMO_MODEL_NAME: versions})}",
        f"job_queue_size={settings.job_queue_size}",
        "metrics_mode=prometheus",
        f"disable_token_authorization={'false' if settings.token_auth else 'true'}",
        "enable_envvars_config=false",
        "install_py_dep_per_model=false",
    ]
    return "\n".join(lines) + "\n"
