"""The README's Python examples run unchanged."""

import re

from conftest import REPO


def python_blocks():
    text = (REPO / "README.md").read_text()
    section = text.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_walkthroughs_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "recall@10" in out
    assert (tmp_path / "tfrs-model" / "model.json").exists()
    assert (tmp_path / "items-index" / "index.json").exists()
