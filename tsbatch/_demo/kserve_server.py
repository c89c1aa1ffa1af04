"""The demo model served by KServe's own ModelServer, over KServe v1 and the v2 protocol.

Run with a Python that has ``kserve`` and ``torch`` (not tsbatch: this file
imports only its sibling ``handler.py``, by path)::

    python kserve_server.py --port 8090 --archive demo.mar

It serves three models from the same trained weights:

- ``demo``: v1 answers ``{"label", "score", "scores"}`` per text; v2 answers a
  ``BYTES`` ``label`` tensor and an ``FP32`` ``score`` tensor, and its metadata
  declares the ``text`` input and both outputs;
- ``demo-probabilities``: one ``FP32 [n, k]`` ``probabilities`` tensor (v1: a
  list of floats per text), class names in the model's order;
- ``demo-embedding``: the model's ``FP32 [n, 16]`` text embedding, for
  ``df.ts.predict``;
- ``demo-pair``: two ``BYTES`` inputs, ``title`` and ``body`` (v1: instances
  with both), classified as the two joined by a space.

A text the handler refuses (empty, too long) fails the whole request with
400, as TorchServe's handler does.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any


def _handler_module() -> Any:
    spec = importlib.util.spec_from_file_location("demo_handler", Path(__file__).with_name("handler.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--archive", type=Path, required=True, help="the demo model archive (demo.mar)")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve reads sys.argv when imported

    import kserve
    import torch
    from kserve import InferOutput, InferRequest, InferResponse
    from kserve.errors import InvalidInput

    handler_module = _handler_module()
    folder = Path(tempfile.mkdtemp(prefix="kserve-demo-"))
    with zipfile.ZipFile(args.archive) as archive:
        archive.extract("model.pt", folder)
    handler = handler_module.DemoTextHandler()
    handler.load(str(folder / "model.pt"))
    classes = list(handler.classes)

    def texts_of(payload: Any, names: list[str]) -> list[str]:
        """The texts of a request: one input, or ``names`` joined by a space."""
        if isinstance(payload, InferRequest):
            given = {
                i.name: [x.decode() if isinstance(x, bytes) else x for x in i.as_numpy().ravel()]
                for i in payload.inputs
            }
            if len(names) > 1 and set(names) - set(given):
                raise InvalidInput(f"expected inputs {names}, got {sorted(given)}")
            columns = [given[n] for n in names] if len(names) > 1 else [next(iter(given.values()))]
            texts = [" ".join(parts) for parts in zip(*columns, strict=True)]
        elif isinstance(payload, dict) and isinstance(payload.get("instances"), list):
            texts = payload["instances"]
            if len(names) > 1:
                if not all(isinstance(t, dict) and set(names) <= set(t) for t in texts):
                    raise InvalidInput(f"expected instances with {names}")
                texts = [" ".join(t[n] for n in names) for t in texts]
        else:
            raise InvalidInput('expected {"instances": [...]} or a v2 BYTES input')
        try:
            return [handler_module._check_text(t, f"item {i}") for i, t in enumerate(texts)]
        except handler_module.BadInput as exc:
            raise InvalidInput(str(exc)) from None

    def probabilities(texts: list[str]) -> list[list[float]]:
        with torch.inference_mode():
            return torch.softmax(handler.model(*handler_module.pack(texts)), dim=1).tolist()

    def embeddings(texts: list[str]) -> list[list[float]]:
        with torch.inference_mode():
            return handler.model.embedding(*handler_module.pack(texts)).tolist()  # type: ignore[no-any-return]

    class Served(kserve.Model):  # type: ignore[misc]
        def __init__(
            self, name: str, outputs: list[dict[str, Any]], inputs: tuple[str, ...] = ("text",)
        ) -> None:
            super().__init__(name)
            self.outputs = outputs
            self.inputs = list(inputs)
            self.ready = True

        def get_input_types(self) -> list[dict[str, Any]]:
            return [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in self.inputs]

        def get_output_types(self) -> list[dict[str, Any]]:
            return self.outputs

        async def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
            texts = texts_of(payload, self.inputs)
            v1, v2 = self.answer(texts)
            if not isinstance(payload, InferRequest):
                return {"predictions": v1}
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[
                    InferOutput(name=o["name"], shape=shape, datatype=o["datatype"], data=data)
                    for o, (shape, data) in zip(self.outputs, v2, strict=True)
                ],
            )

        def answer(self, texts: list[str]) -> tuple[list[Any], list[tuple[list[int], list[Any]]]]:
            raise NotImplementedError

    class Labels(Served):
        def answer(self, texts: list[str]) -> tuple[list[Any], list[tuple[list[int], list[Any]]]]:
            answers = handler.predict(texts)
            n = len(texts)
            return answers, [([n], [a["label"] for a in answers]), ([n], [a["score"] for a in answers])]

    class Probabilities(Served):
        def answer(self, texts: list[str]) -> tuple[list[Any], list[tuple[list[int], list[Any]]]]:
            rows = probabilities(texts)
            return rows, [([len(rows), len(classes)], [p for row in rows for p in row])]

    class Embedding(Served):
        def answer(self, texts: list[str]) -> tuple[list[Any], list[tuple[list[int], list[Any]]]]:
            rows = embeddings(texts)
            return rows, [([len(rows), len(rows[0])], [x for row in rows for x in row])]

    models = [
        Labels(
            "demo",
            [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "score", "datatype": "FP32", "shape": [-1]},
            ],
        ),
        Probabilities(
            "demo-probabilities", [{"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]}]
        ),
        Embedding("demo-embedding", [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}]),
        Labels(
            "demo-pair",
            [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "score", "datatype": "FP32", "shape": [-1]},
            ],
            inputs=("title", "body"),
        ),
    ]
    kserve.ModelServer(
        http_port=args.port, workers=1, enable_grpc=False, enable_latency_logging=False, grace_period=5
    ).start(models)


if __name__ == "__main__":
    main()
