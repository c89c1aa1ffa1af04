"""Train the demo text classifier from the bundled Debian descriptions.

Deterministic: a fixed seed, one thread and a seeded shuffle make two runs on
the same data produce bit-identical weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import nn

from tsbatch._demo.handler import EMBEDDING_DIM, NUM_BUCKETS, TextClassifier, pack
from tsbatch._demo.scoring import Evaluation, evaluate

SEED = 20_240_601
EPOCHS = 4
BATCH_SIZE = 64
LEARNING_RATE = 0.1


@dataclass(frozen=True)
class TrainingResult:
    """Where the checkpoint went and how well it scored."""

    checkpoint: Path
    sha256: str
    classes: list[str]
    val: Evaluation
    test: Evaluation
    seconds: float


def _split(table: dict[str, list[str]], name: str) -> tuple[list[str], list[str]]:
    rows = [i for i, s in enumerate(table["split"]) if s == name]
    return [table["text"][i] for i in rows], [table["label"][i] for i in rows]


def _predict(model: TextClassifier, texts: list[str], classes: list[str]) -> list[str]:
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), 512):
            logits = model(*pack(texts[start : start + 512]))
            out += [classes[i] for i in logits.argmax(dim=1).tolist()]
    return out


def train(data: Path, checkpoint: Path, *, seed: int = SEED, epochs: int = EPOCHS) -> TrainingResult:
    """Train on the ``train`` split of ``data`` and save a checkpoint.

    ``seed`` drives the initial weights and the shuffle; the defaults give
    the demo model's version 1.0.
    """
    started = time.perf_counter()
    table = pq.read_table(data, columns=["text", "label", "split"]).to_pydict()
    classes = sorted(set(table["label"]))
    train_texts, train_labels = _split(table, "train")
    targets = torch.tensor([classes.index(label) for label in train_labels])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = TextClassifier(len(classes))
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loss_fn = nn.CrossEntropyLoss()
        shuffle = torch.Generator().manual_seed(seed)
        packed = [pack([t]) for t in train_texts]
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(train_texts), generator=shuffle).tolist()
            for start in range(0, len(order), BATCH_SIZE):
                chunk = order[start : start + BATCH_SIZE]
                ids = torch.cat([packed[i][0] for i in chunk])
                lengths = torch.tensor([len(packed[i][0]) for i in chunk])
                offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
                optimizer.zero_grad()
                loss_fn(model(ids, offsets), targets[chunk]).backward()
                optimizer.step()
        model.eval()
        scores = {
            name: evaluate(labels, _predict(model, texts, classes))
            for name, (texts, labels) in (("val", _split(table, "val")), ("test", _split(table, "test")))
        }
    finally:
        torch.set_num_threads(threads)

    buffer = io.BytesIO()
    state = {
        "state_dict": model.state_dict(),
        "classes": classes,
        "num_buckets": NUM_BUCKETS,
        "dim": EMBEDDING_DIM,
    }
    torch.save(state, buffer)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(buffer.getvalue())
    result = TrainingResult(
        checkpoint=checkpoint,
        sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
        classes=classes,
        val=scores["val"],
        test=scores["test"],
        seconds=time.perf_counter() - started,
    )
    metrics = {k: v for k, v in asdict(result).items() if k != "checkpoint"}
    checkpoint.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    return result
