"""A Ctrl-C in the middle of a run keeps the rows done; ``retry_failed`` classifies the rest."""

from __future__ import annotations

import _thread
import asyncio
import signal
import threading
from collections.abc import Callable, Iterator

import pandas as pd
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

import tsbatch  # noqa: F401  (the .ts accessor)
from tests.scripted_server import ServerThread
from tests.waiting import wait_for
from tsbatch import ClientConfig, Timeouts, run_report

TEXTS = [f"text {i}" for i in range(20)]
ANSWERED = 5


class Server:
    """Answers the first ``ANSWERED`` texts at once (label: the text's last word), holds the
    rest until ``released`` is set."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.released = threading.Event()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/ping":
            return web.json_response({"status": "Healthy"})
        if request.path.startswith("/models"):
            return web.Response(status=404)
        text = (await request.read()).decode()
        self.sent.append(text)
        if len(self.sent) > ANSWERED and not self.released.is_set():
            await asyncio.to_thread(self.released.wait, 25)
        return web.json_response({text.split()[-1]: 0.75})


@pytest.fixture
def server() -> Iterator[tuple[Server, str]]:
    handler = Server()
    with ServerThread([handler]) as scripted:
        try:
            yield handler, scripted.url
        finally:
            handler.released.set()


def interrupt_when(condition: Callable[[], bool]) -> None:
    """Interrupt the main thread, as Ctrl-C or a kernel interrupt does, once ``condition`` holds."""

    def interrupt() -> None:
        wait_for(condition, "the run to be under way", timeout=20)
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()


def classify(frame: pd.DataFrame, url: str) -> pd.DataFrame:
    # Held requests time out well before pytest would, should the interrupt never come.
    config = ClientConfig(url=url, timeouts=Timeouts(request=20))
    return frame.ts.classify(
        "text", config=config, registry=CollectorRegistry(), mode="rows", concurrency=1, progress=False
    )


def check_partial(partial: pd.DataFrame, frame: pd.DataFrame) -> None:
    assert partial.index.equals(frame.index)
    assert partial["text"].tolist() == TEXTS
    done = partial.iloc[:ANSWERED]
    assert (done["ts_status"] == "ok").all()
    assert done["pred_label"].tolist() == [str(i) for i in range(ANSWERED)]
    left = partial.iloc[ANSWERED:]
    assert (left["ts_status"] == "skipped").all()
    assert (left["ts_error_kind"] == "interrupted").all()
    assert left["pred_label"].isna().all()
    # In rows mode one planned batch's rows go out one by one: it was under way.
    assert [b.status for b in run_report(partial).batches] == ["pending"]


def run_interrupted(run: Callable[[], pd.DataFrame]) -> KeyboardInterrupt:
    # Like ipykernel, and unlike asyncio.run, leave SIGINT to Python's default handler (a process
    # started in the background inherits SIGINT ignored, and then interrupt_main() does nothing).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = run()
    except KeyboardInterrupt as exc:
        return exc
    finally:
        signal.signal(signal.SIGINT, previous)
    counts = result["ts_status"].value_counts().to_dict()
    raise AssertionError(f"the run was not interrupted; it returned {counts}")


def test_an_interrupted_notebook_call_keeps_its_rows_and_retry_failed_finishes_them(
    server: tuple[Server, str],
) -> None:
    handler, url = server
    frame = pd.DataFrame({"text": TEXTS}, index=pd.RangeIndex(100, 120))

    def notebook_cell() -> pd.DataFrame:
        async def cell() -> pd.DataFrame:  # Jupyter's loop is running: the call runs in a thread
            return classify(frame, url)

        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(asyncio.wait_for(cell(), timeout=30))
        finally:
            loop.close()

    interrupt_when(lambda: len(handler.sent) > ANSWERED)
    interrupt = run_interrupted(notebook_cell)
    partial = interrupt.partial  # type: ignore[attr-defined]
    check_partial(partial, frame)
    assert any("exc.partial" in note for note in interrupt.__notes__)
    assert [t.name for t in threading.enumerate() if t.name == "tsbatch-run"] == []

    handler.released.set()
    sent_before = len(handler.sent)
    done = partial.ts.retry_failed(config=ClientConfig(url=url), registry=CollectorRegistry())
    assert handler.sent[sent_before:] == TEXTS[ANSWERED:]
    assert (done["ts_status"] == "ok").all()
    assert done["pred_label"].tolist() == [str(i) for i in range(20)]
    pd.testing.assert_frame_equal(done.iloc[:ANSWERED], partial.iloc[:ANSWERED])


def test_an_interrupted_script_call_keeps_its_rows(server: tuple[Server, str]) -> None:
    handler, url = server
    frame = pd.DataFrame({"text": TEXTS})
    interrupt_when(lambda: len(handler.sent) > ANSWERED)
    interrupt = run_interrupted(lambda: classify(frame, url))  # no loop running: asyncio.Runner
    check_partial(interrupt.partial, frame)  # type: ignore[attr-defined]


def test_a_timeout_around_aclassify_is_still_a_timeout_and_keeps_the_rows_done(
    server: tuple[Server, str],
) -> None:
    handler, url = server
    frame = pd.DataFrame({"text": TEXTS})

    async def expire_once_held(deadline: asyncio.Timeout) -> None:
        while len(handler.sent) <= ANSWERED:  # until the server holds the sixth request
            await asyncio.sleep(0.01)
        deadline.reschedule(asyncio.get_running_loop().time())

    async def scenario() -> TimeoutError:
        config = ClientConfig(url=url, timeouts=Timeouts(request=20))
        options = {"mode": "rows", "concurrency": 1, "progress": False}
        try:
            async with asyncio.timeout(None) as deadline:
                watch = asyncio.ensure_future(expire_once_held(deadline))
                await frame.ts.aclassify("text", config=config, registry=CollectorRegistry(), **options)
        except TimeoutError as exc:
            await watch
            return exc
        raise AssertionError("the run should have timed out")

    timeout = asyncio.run(scenario())
    assert isinstance(timeout.__cause__, asyncio.CancelledError)
    check_partial(timeout.__cause__.partial, frame)  # type: ignore[attr-defined]
