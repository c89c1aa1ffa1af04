"""Rebuild ``debian_descriptions.parquet`` from Debian's package indices.

The data set is a labelled text-classification corpus: each row is one binary
package of Debian's stable release (``main`` component), its text is the
one-line summary joined with the long description, and its label is the
package's Section merged into ten topic classes.

Usage::

    python data_samples/build_dataset.py            # fetch indices, then build
    python data_samples/build_dataset.py --lists DIR  # reuse fetched indices

Fetching runs ``apt-get update`` into a private state folder, with a sources
list holding only ``bookworm main`` (no updates, no security suite) and
``Acquire::Languages=en``, so the system's apt state is left untouched and the
result does not drift with security updates.  The build is deterministic: the
same indices give byte-identical Parquet.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

SUITE = "bookworm"
OUTPUT = Path(__file__).with_name("debian_descriptions.parquet")

#: Debian sections merged into the ten topic classes.  Sections missing here
#: describe a package's kind rather than its subject (libs, libdevel, doc,
#: debug, oldlibs, metapackages, tasks, introspection, misc, localization),
#: belong to a language ecosystem (python, perl, haskell, rust, golang, java,
#: javascript, ruby, gnu-r, php, ocaml, lisp, cli-mono, zope), or are too small
#: or mixed to form a class (comm, database, hamradio, shells, embedded,
#: education); their packages are dropped.
SECTION_TO_LABEL: dict[str, str] = {
    **dict.fromkeys(["devel", "vcs", "interpreters"], "devel"),
    "utils": "utils",
    **dict.fromkeys(["net", "web", "httpd", "mail", "news"], "net"),
    **dict.fromkeys(["science", "math", "electronics"], "science"),
    **dict.fromkeys(["admin", "kernel", "otherosfs"], "admin"),
    "games": "games",
    **dict.fromkeys(["x11", "gnome", "kde", "xfce", "gnustep"], "desktop"),
    **dict.fromkeys(["text", "tex", "editors"], "text"),
    **dict.fromkeys(["sound", "video", "graphics"], "multimedia"),
    "fonts": "fonts",
}

#: Two packages of one source whose texts start with the same characters are
#: near-duplicates (``foo`` and ``foo-data`` usually share a summary prefix).
NEAR_DUPLICATE_PREFIX = 16
_FILLER = re.compile(r"\b(transitional|dummy)\b", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def system_mirror() -> str:
    """The Debian mirror this machine's apt uses for ``SUITE``'s ``main`` component."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in stanzas(path.read_text()):
            if SUITE in stanza.get("Suites", "").split() and "main" in stanza.get("Components", "").split():
                return stanza["URIs"].split()[0]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        for line in path.read_text().splitlines() if path.is_file() else []:
            words = line.split()
            if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
                return words[1]
    raise SystemExit(f"apt has no source for {SUITE} main: pass --mirror URL")


def fetch_indices(state_dir: Path, mirror: str) -> Path:
    """Run ``apt-get update`` into ``state_dir`` and return its lists folder."""
    lists = state_dir / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (state_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    sources = state_dir / "sources.list"
    sources.write_text(f"deb {mirror} {SUITE} main\n")
    subprocess.run(
        [
            "apt-get",
            "update",
            f"-oDir::State::Lists={lists}",
            f"-oDir::Cache={state_dir / 'cache'}",
            f"-oDir::Etc::SourceList={sources}",
            "-oDir::Etc::SourceParts=/dev/null",
            "-oAcquire::Languages=en",
        ],
        check=True,
    )
    return lists


def read_index(lists: Path, pattern: str) -> str:
    """Decompress the one index file in ``lists`` matching ``pattern``."""
    matches = sorted(lists.glob(pattern))
    if len(matches) != 1:
        raise SystemExit(f"expected one index matching {pattern} in {lists}, found {matches}")
    return subprocess.run(
        ["/usr/lib/apt/apt-helper", "cat-file", str(matches[0])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """Parse deb822 stanzas; continuation lines stay in their field, newline-joined."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields:
            yield fields


def release_facts(lists: Path) -> dict[str, str]:
    """Version and date of the release the indices belong to."""
    (in_release,) = sorted(lists.glob(f"*_dists_{SUITE}_InRelease"))
    facts = {}
    for line in in_release.read_text().splitlines():
        key, _, value = line.partition(": ")
        if key in {"Version", "Date", "Codename"} and key not in facts:
            facts[key] = value
    return facts


def description_text(description: str) -> str:
    """Join a Description-en field into summary + newline + long description."""
    summary, _, body = description.partition("\n")
    paragraphs: list[list[str]] = [[]]
    for line in body.splitlines():
        line = line.strip()
        if line == ".":
            paragraphs.append([])
        elif line:
            paragraphs[-1].append(line)
    parts = [_SPACES.sub(" ", summary).strip()]
    parts += [" ".join(p) for p in paragraphs if p]
    return "\n".join(parts)


def split_of(source: str) -> str:
    """Assign train/val/test 8/1/1 from a hash of the source package."""
    bucket = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big") % 10
    return "train" if bucket < 8 else ("val" if bucket == 8 else "test")


def build_rows(packages: str, translations: str) -> list[dict[str, str]]:
    """Join the indices and apply the label map, filters and de-duplication."""
    long_descriptions = {
        (t["Package"], t["Description-md5"]): t["Description-en"] for t in stanzas(translations)
    }
    candidates = []
    seen_packages = set()
    for p in stanzas(packages):
        name = p["Package"]
        label = SECTION_TO_LABEL.get(p.get("Section", ""))
        if label is None or name in seen_packages:
            continue
        description = long_descriptions.get((name, p.get("Description-md5", "")))
        if description is None:
            continue
        summary = description.partition("\n")[0]
        if _FILLER.search(summary) or name.endswith(("-dbg", "-dbgsym")):
            continue
        seen_packages.add(name)
        source = p.get("Source", name).split(" ")[0]
        candidates.append(
            {
                "id": name,
                "text": description_text(description),
                "label": label,
                "section": p["Section"],
                "source": source,
            }
        )
    candidates.sort(key=lambda row: row["id"])

    rows, seen_texts, seen_starts = [], set(), set()
    for row in candidates:
        start = (row["source"], row["text"][:NEAR_DUPLICATE_PREFIX].lower())
        if row["text"] in seen_texts or start in seen_starts:
            continue
        seen_texts.add(row["text"])
        seen_starts.add(start)
        row["split"] = split_of(row["source"])
        rows.append(row)
    return rows


def write_parquet(rows: list[dict[str, str]], path: Path) -> None:
    """Write rows as zstd Parquet; no wall-clock or pandas metadata goes in."""
    columns = ["id", "text", "label", "split", "section", "source"]
    table = pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in columns})
    pq.write_table(table, path, compression="zstd", compression_level=19, row_group_size=len(rows) or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=Path, help="apt lists folder already fetched")
    parser.add_argument("--mirror", help="Debian mirror URL (default: the one this machine's apt uses)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        lists = args.lists or fetch_indices(Path(tmp), args.mirror or system_mirror())
        packages = read_index(lists, f"*_dists_{SUITE}_main_binary-amd64_Packages*")
        translations = read_index(lists, f"*_dists_{SUITE}_main_i18n_Translation-en*")
        release = release_facts(lists)
    rows = build_rows(packages, translations)
    write_parquet(rows, args.output)

    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["split"]] = counts.get(row["split"], 0) + 1
    print(f"release: Debian {release.get('Version')} ({release.get('Codename')}), {release.get('Date')}")
    print(f"rows: {len(rows)} {counts}")
    print(f"sha256: {digest}  {args.output.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
