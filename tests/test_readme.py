"""The README's test command is exactly what CI runs; its demo command runs the shipped demo."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("python3.11 -m venv")]


def test_ci_runs_the_readme_test_command():
    readme = _commands((ROOT / "README.md").read_text())
    ci = _commands((ROOT / ".ci" / "run").read_text())
    assert len(readme) == 2, "the README must give exactly two fresh-machine commands"
    assert readme[1].endswith("-m pytest") and readme[0].endswith("lfrecon demo")
    assert ci == [readme[1]]
