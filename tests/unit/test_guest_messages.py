"""The one line a failed guest step is summed up in: the decisive error, not the first one seen."""
from __future__ import annotations

from pathlib import Path

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


PY2_CHECK = r"""
import sys
sys.path.insert(0, sys.argv[1])
import _common as c
noisy = ['printf', '\xe2\x80\x98cc1plus\xe2\x80\x99 \xff\xfe\n']
code, output = c.capture(noisy)
code, last = c.run_tee(noisy)
error = c.GuestError('gcc: fatal error: cannot execute %s' % last[-1])
c.say(str(error))  # as build.py reports a failed format
c.say(c.native_text(c.GuestError(u'\u2018unicode\u2019')))
c.say(output.rstrip())
"""


def test_guest_helpers_take_any_output_on_python2(tmp_path: Path) -> None:
    """Bytes that are UTF-8 beyond ASCII (gcc's quotes) and bytes that are not UTF-8 at all, on
    Python 2.7 with a C locale: logged, put in a message, never a UnicodeError."""
    import subprocess

    import pytest

    from .test_guest_imports_guards import python2

    found = python2()
    if found is None:
        pytest.skip("no Python 2.7 here; tests/e2e/test_untuned.py runs the guest scripts on Debian 11's")
    done = subprocess.run([found, "-c", PY2_CHECK, str(Path(build.__file__).parent)], capture_output=True,
                          check=False, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    assert "gcc: fatal error: cannot execute \u2018cc1plus\u2019 \ufffd\ufffd" in lines
    assert "\u2018unicode\u2019" in lines
