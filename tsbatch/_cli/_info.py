"""``tsbatch health``, ``tsbatch models`` and ``tsbatch model-info``."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tsbatch import _loop
from tsbatch._cli._common import HelpFormatter, add_client_options, client_config
from tsbatch._client import TorchServeClient


def _with_client(args: argparse.Namespace, use: Callable[[TorchServeClient], Awaitable[int]]) -> int:
    async def main() -> int:
        async with TorchServeClient(config=client_config(args)) as client:
            return await use(client)

    return _loop.run(main())


def _health(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        health = await client.health()
        data = {
            "healthy": health.healthy,
            "status": health.status,
            "url": client.config.url,
            "error": health.error,
        }
        print(
            json.dumps(data)
            if args.json
            else f"{client.config.url}: {health.status}" + (f" ({health.error})" if health.error else "")
        )
        return 0 if health.healthy else 1

    return _with_client(args, use)


def _models(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        names = await client.list_models()
        print(json.dumps(names) if args.json else "\n".join(names))
        return 0

    return _with_client(args, use)


def _model_info(args: argparse.Namespace) -> int:
    async def use(client: TorchServeClient) -> int:
        info = await client.get_model_info(args.name, args.model_version)
        data = dataclasses.asdict(info)
        if args.json:
            print(json.dumps(data))
        else:
            width = max(len(k) for k in data)
            for key, value in data.items():
                print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, dict | list) else value}")
        return 0

    return _with_client(args, use)


def add_info_commands(commands: Any) -> None:
    """``health``, ``models`` and ``model-info``."""
    for name, func, text in (
        ("health", _health, "check the server's health (exit 1 when unhealthy)"),
        ("models", _models, "list the registered models"),
    ):
        sub = commands.add_parser(name, formatter_class=HelpFormatter, help=text)
        sub.add_argument("--json", action="store_true", help="print JSON (default: text)")
        add_client_options(sub)
        sub.set_defaults(func=func)
    info = commands.add_parser(
        "model-info",
        formatter_class=HelpFormatter,
        help="show a model's batching, workers, queue and description",
    )
    info.add_argument("name", help="model name")
    info.add_argument("--model-version", help="model version (default: the model's default)")
    info.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    add_client_options(info)
    info.set_defaults(func=_model_info)
