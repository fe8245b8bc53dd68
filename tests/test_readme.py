"""The README's library example runs exactly as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_library_example_runs_as_written():
    example = python_blocks()[0]
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    assert namespace["G"].order == 8
    assert tuple(namespace["h"].shape) == (8, 16, 8, 32, 32)
    assert tuple(namespace["z"].shape) == (8, 16, 32, 32)
