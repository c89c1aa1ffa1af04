"""The demo model as an MLServer model: the Open Inference Protocol (v2) only.

MLServer imports this file from the model's folder, next to ``handler.py``
and a ``model-settings.json`` such as::

    {"name": "demo", "implementation": "mlserver_model.DemoModel",
     "parameters": {"uri": "/path/to/demo.mar"}}

It answers a ``BYTES`` ``label`` tensor and an ``FP32`` ``score`` tensor.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

import handler as demo_handler  # the sibling handler.py, on MLServer's path with this file
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


class DemoModel(MLModel):  # type: ignore[misc]
    """Labels and scores for a ``BYTES`` input of texts."""

    async def load(self) -> bool:
        archive = Path(str(self.settings.parameters.uri))
        folder = Path(tempfile.mkdtemp(prefix="mlserver-demo-"))
        with zipfile.ZipFile(archive) as packed:
            packed.extract("model.pt", folder)
        self.handler: Any = demo_handler.DemoTextHandler()
        self.handler.load(str(folder / "model.pt"))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        try:
            checked = [demo_handler._check_text(t, f"item {i}") for i, t in enumerate(texts)]
        except demo_handler.BadInput as exc:
            raise MLServerError(str(exc), status_code=400) from None
        answers = self.handler.predict(checked)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                ResponseOutput(
                    name="label", shape=[len(answers)], datatype="BYTES", data=[a["label"] for a in answers]
                ),
                ResponseOutput(
                    name="score", shape=[len(answers)], datatype="FP32", data=[a["score"] for a in answers]
                ),
            ],
        )
