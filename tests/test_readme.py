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


def test_readme_python_block_runs_verbatim_in_a_fresh_interpreter():
    import re
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "the README shows a Python block"
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]


def test_public_names_work_right_after_import_in_any_order():
    import subprocess
    import sys

    for first in ("engines", "physics", "modalities", "metrics"):
        code = f"import napari_lfrecon as nl; nl.{first}; print(nl.engines.available())"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "rl" in done.stdout, (first, done.stderr[-1500:])
