"""The README's plugin table names every component each shipped distribution registers in the slots it lists."""

import re
from pathlib import Path

from plinth.plugins import load_plugins

README = Path(__file__).resolve().parents[2] / "README.md"
SLOT_WORDS = {"generator": "generator", "trainer": "trainer", "merger": "merger", "evaluator": "evaluator",
              "strateg": "strategy"}


def test_readme_plugin_table_lists_every_registered_component():
    pm = load_plugins(strict=False, refresh=True)
    rows = re.findall(r"^\| `(plinth[\w-]*)`[^|]*\| ([^|]+) \|", README.read_text(), re.M)
    checked = 0
    for dist, registers in rows:
        for word, names in re.findall(r"(generator|trainer|merger|evaluator|strateg)\w* ((?:`[^`]+`(?:, )?)+)",
                                      registers):
            slot = SLOT_WORDS[word]
            listed = set(re.findall(r"`([^`]+)`", names))
            registered = {n for n, e in pm.components[slot].items() if e.distribution == dist}
            assert listed == registered, (dist, slot, sorted(registered - listed), sorted(listed - registered))
            checked += 1
    assert checked >= 5  # the table was parsed, not skipped
