"""The cache of built demo model archives: trained once, found again, never read half-written.

These tests swap the training for a builder that packs a small fake archive,
so they run in milliseconds and without torch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tsbatch import LocalServerError
from tsbatch._demo import archive, cache
from tsbatch._demo.archive import DEFAULT_DATA, DEMO_VERSIONS, Recipe
from tsbatch._demo.cache import archive_key, cache_dir, demo_archive, entry_path
from tsbatch._serve.models import model_archives
from tsbatch._serve.settings import ServeSettings


class FakeBuilder:
    """Packs ``model.pt`` (the version and the data's digest) and its scores, as training would."""

    def __init__(self, pause: float = 0.0, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.folders: list[Path] = []
        self.pause = pause
        self.fail = fail

    def __call__(self, folder: Path, data: Path, version: str) -> Path:
        self.calls.append(version)
        self.folders.append(folder)
        mar = folder / f"{archive.archive_stem(version)}.mar"
        checkpoint = f"{version} {hashlib.sha256(data.read_bytes()).hexdigest()}".encode() * 1000
        scores = {"rows": 10, "accuracy": 0.5, "macro_f1": 0.25}
        mar.with_suffix(".json").write_text(
            json.dumps(
                {
                    "sha256": hashlib.sha256(checkpoint).hexdigest(),
                    "val": scores,
                    "test": scores,
                    "seconds": 1.5,
                }
            )
        )
        with zipfile.ZipFile(mar, "w") as packed:
            packed.writestr("model.pt", checkpoint)
            time.sleep(self.pause)
            if self.fail:
                raise RuntimeError("training stopped half-way")
        return mar


@pytest.fixture
def data(tmp_path: Path) -> Path:
    copy = tmp_path / "data.parquet"
    shutil.copyfile(DEFAULT_DATA, copy)
    return copy


@pytest.fixture
def where(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"TSBATCH_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/xdg", "HOME": "/home/me"}, "/srv/cache"),
        ({"XDG_CACHE_HOME": "/xdg", "HOME": "/home/me"}, "/xdg/tsbatch"),
        ({"XDG_CACHE_HOME": "relative", "HOME": "/home/me"}, "/home/me/.cache/tsbatch"),
        ({"TSBATCH_CACHE_DIR": "", "HOME": "/home/me"}, "/home/me/.cache/tsbatch"),
    ],
)
def test_the_cache_folder_comes_from_the_environment(environ: dict[str, str], expected: str) -> None:
    assert cache_dir(environ) == Path(expected)


def test_the_key_is_stable_and_differs_per_version(data: Path) -> None:
    assert archive_key(data, "1.0") == archive_key(data, "1.0")
    assert archive_key(data, "1.0") != archive_key(data, "2.0")


def test_the_key_changes_with_the_training_data(data: Path) -> None:
    before = archive_key(data, "1.0")
    data.write_bytes(data.read_bytes() + b"\0")
    assert archive_key(data, "1.0") != before


def test_the_key_changes_with_the_recipe(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = archive_key(data, "2.0")
    monkeypatch.setitem(DEMO_VERSIONS, "2.0", Recipe(seed=DEMO_VERSIONS["2.0"].seed, epochs=3))
    assert archive_key(data, "2.0") != before


@pytest.mark.parametrize("source", ["train.py", "handler.py", "archive.py"])
def test_the_key_changes_with_the_code_that_builds_the_archive(
    source: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = archive_key(data, "1.0")
    sources = tmp_path / "sources"
    shutil.copytree(Path(cache.__file__).parent, sources)
    with open(sources / source, "a") as edited:
        edited.write("\n# one more line\n")
    monkeypatch.setattr(cache, "_HERE", sources)
    assert archive_key(data, "1.0") != before


def test_an_unknown_version_names_the_known_ones(data: Path) -> None:
    with pytest.raises(LocalServerError, match=r"unknown demo model version '3\.0': choose from 1\.0, 2\.0"):
        archive_key(data, "3.0")


def test_missing_training_data_says_how_to_point_at_some(tmp_path: Path) -> None:
    with pytest.raises(LocalServerError, match=r"training data .*nope\.parquet not found.*--data PATH"):
        archive_key(tmp_path / "nope.parquet", "1.0")


def test_a_miss_trains_and_caches_then_a_hit_reuses_without_training(
    data: Path, where: Path, tmp_path: Path
) -> None:
    build = FakeBuilder()
    said: list[str] = []
    first = demo_archive(tmp_path / "run1", "2.0", data, cache=where, build=build, say=said.append)
    second = demo_archive(tmp_path / "run2", "2.0", data, cache=where, build=build, say=said.append)
    assert build.calls == ["2.0"]
    assert (first.cached, second.cached) == (False, True)
    assert first.path == tmp_path / "run1" / "demo-2.0.mar"
    assert second.path == tmp_path / "run2" / "demo-2.0.mar"
    assert second.path.read_bytes() == first.path.read_bytes()
    assert second.path.with_suffix(".json").is_file()
    assert (second.sha256, second.test) == (first.sha256, first.test)
    assert "training" in said[0] and "trained in 1.5s" in said[1]
    assert said[2].startswith("demo model 2.0: using the cached archive ")
    assert entry_path(where, data, "2.0").is_file()


def test_version_1_0_keeps_the_name_demo_mar(data: Path, where: Path, tmp_path: Path) -> None:
    found = demo_archive(tmp_path / "run", "1.0", data, cache=where, build=FakeBuilder())
    assert found.path.name == "demo.mar"


def test_a_hit_hard_links_the_cached_archive_where_it_can(data: Path, where: Path, tmp_path: Path) -> None:
    build = FakeBuilder()
    demo_archive(tmp_path / "run1", "1.0", data, cache=where, build=build)
    found = demo_archive(tmp_path / "run2", "1.0", data, cache=where, build=build)
    assert found.path.samefile(entry_path(where, data, "1.0"))


def test_other_data_is_a_miss(data: Path, where: Path, tmp_path: Path) -> None:
    build = FakeBuilder()
    demo_archive(tmp_path / "run", "1.0", data, cache=where, build=build)
    data.write_bytes(data.read_bytes() + b"\0")
    again = demo_archive(tmp_path / "run", "1.0", data, cache=where, build=build)
    assert build.calls == ["1.0", "1.0"] and not again.cached


def test_another_recipe_is_a_miss(
    data: Path, where: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = FakeBuilder()
    demo_archive(tmp_path / "run", "2.0", data, cache=where, build=build)
    monkeypatch.setitem(DEMO_VERSIONS, "2.0", Recipe(seed=1, epochs=1))
    demo_archive(tmp_path / "run", "2.0", data, cache=where, build=build)
    assert build.calls == ["2.0", "2.0"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda mar: mar.write_bytes(mar.read_bytes()[:100]), id="truncated-archive"),
        pytest.param(lambda mar: mar.with_suffix(".json").write_text("{"), id="unreadable-json"),
        pytest.param(lambda mar: mar.with_suffix(".json").unlink(), id="missing-json"),
        pytest.param(
            lambda mar: mar.with_suffix(".json").write_text(
                mar.with_suffix(".json").read_text().replace('"sha256": "', '"sha256": "0')
            ),
            id="another-checkpoint",
        ),
    ],
)
def test_a_damaged_entry_is_trained_again_and_replaced(
    damage: object, data: Path, where: Path, tmp_path: Path
) -> None:
    build = FakeBuilder()
    demo_archive(tmp_path / "run1", "1.0", data, cache=where, build=build)
    entry = entry_path(where, data, "1.0")
    damage(entry)  # type: ignore[operator]
    again = demo_archive(tmp_path / "run2", "1.0", data, cache=where, build=build)
    assert build.calls == ["1.0", "1.0"] and not again.cached
    assert cache.read_entry(entry, "1.0") is not None


def test_a_cache_folder_that_cannot_be_written_still_gives_an_archive(data: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    said: list[str] = []
    found = demo_archive(tmp_path / "run", "1.0", data, cache=blocked, build=FakeBuilder(), say=said.append)
    assert found.path.is_file() and not found.cached
    assert "not writable" in said[0]


def test_an_entry_appears_whole_or_not_at_all(data: Path, where: Path, tmp_path: Path) -> None:
    build = FakeBuilder(fail=True)
    entry = entry_path(where, data, "1.0")
    with pytest.raises(RuntimeError, match="half-way"):
        demo_archive(tmp_path / "run", "1.0", data, cache=where, build=build)
    # The half-built archive was in a folder of its own, now gone; the entry's name was never used.
    (folder,) = build.folders
    assert folder.parent == entry.parent and folder != entry.parent
    assert not folder.exists()
    assert list(entry.parent.iterdir()) == []
    assert not (tmp_path / "run" / "demo.mar").exists()


def test_builders_racing_each_other_leave_a_whole_entry_that_readers_never_see_half_written(
    data: Path, where: Path, tmp_path: Path
) -> None:
    build = FakeBuilder(pause=0.05)
    entry = entry_path(where, data, "1.0")
    seen: list[bool] = []
    found: list[cache.DemoArchive] = []
    done = threading.Event()

    def read_while_building() -> None:
        while not done.is_set():
            if entry.exists():
                seen.append(cache.read_entry(entry, "1.0") is not None)

    def build_one(n: int) -> None:
        found.append(demo_archive(tmp_path / f"run{n}", "1.0", data, cache=where, build=build))

    reader = threading.Thread(target=read_while_building)
    reader.start()
    builders = [threading.Thread(target=build_one, args=(n,)) for n in range(4)]
    for thread in builders:
        thread.start()
    for thread in builders:
        thread.join()
    done.set()
    reader.join()
    assert len(found) == 4 and all(f.path.is_file() for f in found)
    assert all(seen), "a reader saw a half-written entry"
    assert cache.read_entry(entry, "1.0") is not None
    assert [p.name for p in entry.parent.iterdir() if p.name.startswith(".")] == []


def test_a_server_start_takes_every_version_from_the_cache_and_says_so(
    data: Path, where: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("1.0", "2.0"):
        demo_archive(tmp_path / "earlier-run", version, data, cache=where, build=FakeBuilder())
    monkeypatch.setenv("TSBATCH_CACHE_DIR", str(where))
    said: list[str] = []
    settings = ServeSettings(run_dir=tmp_path / "run", demo_versions=("1.0", "2.0"), training_data=data)
    archives = model_archives(settings, said.append)  # were the cache missed, this would train
    store = (tmp_path / "run" / "model-store").resolve()
    assert archives == {"1.0": store / "demo.mar", "2.0": store / "demo-2.0.mar"}
    assert [line.split(":")[0] for line in said] == ["demo model 1.0", "demo model 2.0"]
    assert all("using the cached archive" in line for line in said)
