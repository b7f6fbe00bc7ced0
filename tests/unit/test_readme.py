"""The README's architecture diagram names exactly the topics `atlas.topics` declares."""
from __future__ import annotations

import re
from pathlib import Path

from atlas.app import app
from atlas.settings import settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _diagram() -> str:
    text = README.read_text()
    section = text[text.index("## Architecture"):]
    return re.search(r"```mermaid\n(.*?)```", section, re.S).group(1)


def test_architecture_diagram_names_every_declared_topic_and_no_other():
    import atlas.topics  # noqa: F401  (declares the topics on the app)

    declared = {name.removeprefix(f"{settings.topic_prefix}.") for name in app.declared_topics}
    drawn = {name.removeprefix("atlas.") for name in re.findall(r"\batlas\.[a-z]+(?:\.[a-z]+)?", _diagram())}
    assert declared == drawn
    assert "commands" in declared and len(declared) == 9
