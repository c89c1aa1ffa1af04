"""The base install (no extras) works: imports and every command but ``serve``.

The checks run in one child Python in which the extras' modules cannot be
imported, as on a machine where they were never installed; each test then
reads its part of what the child found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

#: The top-level modules of the extras: serve (psutil, torch, torchserve, yaml), dask, fast, plot.
EXTRAS = ("psutil", "torch", "ts", "yaml", "dask", "distributed", "uvloop", "orjson", "matplotlib")
COMMANDS = [
    [],
    ["classify"],
    ["retry-failed"],
    ["report"],
    ["compare"],
    ["health"],
    ["models"],
    ["model-info"],
]
SERVE_COMMANDS = [["serve", "start"], ["serve", "status"], ["demo"]]

CHILD = """
import contextlib, io, json, sys
for name in EXTRAS:
    sys.modules[name] = None  # import fails, as without the extra

import tsbatch
from tsbatch import *
found = {"has_dask": hasattr(tsbatch, "dask"), "has_serve": hasattr(tsbatch, "serve")}
try:
    tsbatch.dask
except AttributeError as exc:
    found["dask_error"] = str(exc)

from tsbatch._cli import main

def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

from tsbatch import _json, _loop
from tsbatch._sync import run_sync

async def loop_module():
    import asyncio
    return type(asyncio.get_running_loop()).__module__

found["fallbacks"] = {
    "loop": _loop.loop_name(),
    "sync_loop": run_sync(loop_module),
    "json": _json.decode(_json.encode({"a": [1, "\u00e9", None]})),
    "nan": repr(_json.decode(b"[NaN]")),
}
import asyncio
import pandas as pd

async def classified():
    def answer(request):
        found = "/predictions" in request.url
        return tsbatch.Reply(200, body=b'{"games": 0.9}') if found else tsbatch.Reply(404)

    config = tsbatch.ClientConfig(url="http://tsbatch.test")
    async with tsbatch.TorchServeClient(config=config, transport=tsbatch.MockTransport(answer)) as client:
        return await pd.DataFrame({"text": ["a", "b"]}).ts.aclassify("text", client=client, progress=False)

summary = asyncio.run(classified()).ts.report()
found["report"] = {"text": str(summary), "html": summary._repr_html_()}
try:
    summary.plot()
except tsbatch.ConfigError as exc:
    found["report"]["plot_error"] = str(exc)
found["help"] = {" ".join(argv): run([*argv, "--help"]) for argv in COMMANDS}
found["serve"] = {" ".join(argv): run(argv) for argv in SERVE_COMMANDS}
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    program = f"EXTRAS = {EXTRAS!r}\nCOMMANDS = {COMMANDS!r}\nSERVE_COMMANDS = {SERVE_COMMANDS!r}\n"
    program += textwrap.dedent(CHILD)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_package_imports_without_extras_and_says_which_extra_an_optional_part_needs(
    found: dict[str, Any],
) -> None:
    assert found["has_dask"] is False and found["has_serve"] is False
    assert "pip install 'tsbatch[dask]'" in found["dask_error"]


def test_without_the_fast_extra_asyncio_and_the_standard_json_serve(found: dict[str, Any]) -> None:
    assert found["fallbacks"] == {
        "loop": "asyncio",
        "sync_loop": "asyncio.unix_events",
        "json": {"a": [1, "\u00e9", None]},
        "nan": "[nan]",
    }


@pytest.mark.parametrize("command", [" ".join(argv) for argv in COMMANDS])
def test_every_command_but_serve_works_without_extras(found: dict[str, Any], command: str) -> None:
    result = found["help"][command]
    assert result["code"] == 0, result["err"]
    assert "usage: tsbatch" in result["out"]


@pytest.mark.parametrize("command", [" ".join(argv) for argv in SERVE_COMMANDS])
def test_serve_without_its_extra_says_which_extra_to_install(found: dict[str, Any], command: str) -> None:
    result = found["serve"][command]
    assert result["code"] == 2
    assert "pip install 'tsbatch[serve]'" in result["err"]
    assert "Traceback" not in result["err"]


def test_a_run_report_works_without_the_plot_extra_and_its_plots_say_which_extra_they_need(
    found: dict[str, Any],
) -> None:
    report = found["report"]
    assert "2 ok, 0 error, 0 skipped" in report["text"] and "2 ok, 0 error" in report["html"]
    assert "pip install 'tsbatch[plot]'" in report["html"] and "<img" not in report["html"]
    assert "pip install 'tsbatch[plot]'" in report["plot_error"]
