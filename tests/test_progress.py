"""The progress bar's form: tqdm's widget in a notebook with ipywidgets, text everywhere else."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
from tqdm.std import tqdm as text_bar

from tsbatch._progress import bar_class


def test_outside_a_notebook_the_bar_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert bar_class() is text_bar


def test_in_a_notebook_without_ipywidgets_the_bar_is_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "ipywidgets" else found(name)
    )
    assert bar_class() is text_bar  # and no warning that widgets are missing (warnings are errors)


def test_in_a_notebook_with_ipywidgets_the_bar_is_the_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets", reason="the notebook extra is not installed")
    from tqdm.notebook import tqdm as widget_bar

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert bar_class() is widget_bar
