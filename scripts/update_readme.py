"""Splice the configuration reference (generated from the schema) into README.md."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import render_reference

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def spliced(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_reference()}{END}{tail}"


def main() -> None:
    README.write_text(spliced(README.read_text()))


if __name__ == "__main__":
    main()
