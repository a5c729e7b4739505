"""Code extraction read as Markdown reads fences, and the choice of the block that is the solution."""

from __future__ import annotations

import pytest

from grpokit.rewards.code import count_tests, extract_code, is_complete_program
from grpokit.rewards.fences import fenced_blocks

FUNC = "def f(x):\n    if x:\n        return x\n    return 0\n"


def indent(code: str, prefix: str) -> str:
    return "".join(prefix + line if line.strip() else line for line in code.splitlines(True))


@pytest.mark.parametrize(
    "text",
    [
        "1. Write the function:\n   ```python\n" + indent(FUNC, "   ") + "   ```\n2. Test it.",  # the case
        "- Write it:\n  ```python\n" + indent(FUNC, "  ") + "  ```\n",  # bullet, 2-space content column
        "1. Plan\n   - Code:\n     ```py\n" + indent(FUNC, "     ") + "     ```\n",  # nested list
        "1. ```python\n" + indent(FUNC, "   ") + "   ```\n",  # fence on the item's own line
        "10) ```python\n" + indent(FUNC, "    ") + "    ```\n",  # wide marker
        "> ```python\n" + indent(FUNC, "> ").replace("\n\n", "\n>\n") + "> ```\n",  # block quote
        "> > ```python\n" + indent(FUNC, "> > ") + "> > ```\n",  # nested quote
        "> 1. ```python\n" + indent(FUNC, ">    ") + ">    ```\n",  # list inside a quote
        "~~~python\n" + FUNC + "~~~\n",  # tildes
        "````python\n" + FUNC + "````\n",  # longer fence
        "```python\r\n" + FUNC.replace("\n", "\r\n") + "```\r\n",  # CRLF
        "1. Write the function:\n   ```python\n" + indent(FUNC, "   "),  # unclosed inside a list
        "Here: ```python\n" + FUNC + "```",  # text before the fence
    ],
    ids=["numbered", "bullet", "nested", "on-marker", "wide-marker", "quote", "quote2", "quote-list", "tildes",
         "long-fence", "crlf", "unclosed-list", "inline-open"],
)
def test_fenced_code_loses_its_container_marks(text):
    assert extract_code(text, "f") == FUNC
    compile(extract_code(text, "f"), "<x>", "exec")


def test_lines_less_indented_than_the_fence_lose_what_they_have():
    assert extract_code("  ```python\n    x = 1\n y = 2\n  ```") == "  x = 1\ny = 2\n"


def test_closing_fence_must_match_the_opening_one():
    blocks = fenced_blocks("````python\ns = '''\n```\n'''\n````\n~~~\n```\n~~~")
    assert [b.code for b in blocks] == ["s = '''\n```\n'''\n", "```\n"]
    assert [b.lang for b in blocks] == ["python", ""] and all(b.closed for b in blocks)


def test_a_line_leaving_the_quote_ends_the_block():
    blocks = fenced_blocks("> ```python\n> x = 1\nplain text\n```python\ny = 2\n```")
    assert [(b.code, b.closed) for b in blocks] == [("x = 1\n", False), ("y = 2\n", True)]


def test_info_string_languages():
    langs = [b.lang for b in fenced_blocks("```Python title=x\na\n```\n```{.py}\nb\n```\n```text\nc\n```")]
    assert langs == ["python", "py", "text"]
    assert extract_code("```text\n5\n```\n```bash\nls\n```") is None
    assert extract_code("```\nx = 1\n```\n```text\n5\n```") == "x = 1\n"  # unlabeled when no python


def test_inline_triple_backticks_are_not_fences():
    assert fenced_blocks("use ```x``` inline") == []
    assert extract_code("use ```x``` inline") == "use ```x``` inline"


def test_think_block_is_never_code():
    text = "<think>\n1. ```python\n   def f(x):\n       return 1\n   ```\n</think>\n1. ```python\n" + indent(FUNC, "   ")
    assert extract_code(text, "f") == FUNC


PROGRAM = "import sys\n\ndef solve(a, b):\n    return a + b\n\na, b = map(int, sys.stdin.read().split())\nprint(solve(a, b))\n"


@pytest.mark.parametrize(
    "text",
    [
        f"```python\n{PROGRAM}```\nQuick check:\n```python\nprint(solve(2, 3))  # 5\n```",  # the case
        f"Usage first:\n```python\nsolve(1, 2)\n```\nSolution:\n```python\n{PROGRAM}```",
        f"```python\n{PROGRAM}```\nExpected output:\n```\n5\n```",
        f"```python\n{PROGRAM}```\nTest:\n```python\nassert solve(2, 3) == 5\nfor a in range(3):\n    print(solve(a, a))\n```",
        f"```\n{PROGRAM}```\nRun it:\n```\nresult = solve(2, 3)\n```",
        f"```python\n{PROGRAM}```\nSample:\n```python\n# input: 2 3\n```",
    ],
    ids=["trailing-demo", "leading-demo", "output-block", "test-loop", "unlabeled", "comment-only"],
)
def test_io_task_takes_the_complete_program(text):
    assert extract_code(text) == PROGRAM


def test_the_last_complete_program_wins_and_a_lone_snippet_is_kept():
    fixed = PROGRAM.replace("a + b", "b + a")
    assert extract_code(f"```python\n{PROGRAM}```\nBetter:\n```python\n{fixed}```") == fixed
    assert extract_code("```python\nprint(solve(1))\n```") == "print(solve(1))\n"  # nothing better


@pytest.mark.parametrize(
    ("code", "complete"),
    [
        (PROGRAM, True),
        ("print(solve(2, 3))", False),
        ("x = int(input())\nprint(x * 2)", True),
        ("from math import *\nprint(sqrt(4))", True),
        ("import numpy as np\nprint(np.zeros(1))", True),
        ("for i in range(3):\n    print(helper(i))", False),
        ("try:\n    pass\nexcept ValueError as e:\n    print(e)", True),
        ("print([y for y in range(3)])\nprint((lambda z: z)(1))", True),
        ("class A:\n    pass\nprint(A())", True),
        ("'just a docstring'\n", False),
        ("42", False),
        ("def broken(:\n", False),
    ],
)
def test_complete_program(code, complete):
    assert is_complete_program(code) is complete


def test_count_tests_counts_asserts():
    assert count_tests("def check(c):\n    assert c(1) == 1\n    assert c(2) == 2\n") == 2
    assert count_tests("def check(c):\n    for i in range(9):\n        assert c(i) == i\n") == 1
    assert count_tests("def check(c):\n    pass\n") == 1
    assert count_tests("def check(:") == 1
