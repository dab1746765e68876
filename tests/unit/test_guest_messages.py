"""The one line a failed guest step is summed up in: the decisive error, not the first one seen."""
from __future__ import annotations

from builder.guest import build

CHAINED = """\
running bdist_egg
Traceback (most recent call last):
  File "setup.py", line 3, in <module>
    from UserDict import DictMixin
ModuleNotFoundError: No module named 'UserDict'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "setup.py", line 5, in <module>
    from collections import Mapping
ImportError: cannot import name 'Mapping' from 'collections' (/usr/lib/python3.11/collections/__init__.py)
""".splitlines()

GCC = """\
building 'yaml._yaml' extension
x86_64-linux-gnu-gcc -c yaml/_yaml.c -o build/temp/yaml/_yaml.o
yaml/_yaml.c:4:10: fatal error: yaml.h: No such file or directory
compilation terminated.
error: command 'x86_64-linux-gnu-gcc' failed with exit code 1
""".splitlines()


def test_a_chain_of_exceptions_is_named_by_its_last() -> None:
    assert build.pick_error(CHAINED).startswith("ImportError: cannot import name 'Mapping' from 'collections'")


def test_a_compiler_error_still_beats_distutils_summary() -> None:
    assert build.pick_error(GCC) == "yaml/_yaml.c:4:10: fatal error: yaml.h: No such file or directory"


def test_a_traceback_before_a_compiler_error_does_not_hide_it() -> None:
    warned = ["Traceback (most recent call last):", '  File "setup.py", line 9, in <module>',
              "ImportError: No module named Cython (falling back to the C file)"]
    assert build.pick_error(warned + GCC) == "yaml/_yaml.c:4:10: fatal error: yaml.h: No such file or directory"
