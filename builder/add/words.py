"""What a failed build says it lacked, read from its log: headers, libraries, tools, pkg-config
modules, a C++ compiler. Each becomes a file to look up in the platform's package index."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..machines.provides import Query, glob_literal

# gcc 4.5 and later say `fatal error:`; CentOS 5 and 6 (gcc 4.1, 4.4) say `error:`.
_HEADER = re.compile(r"(?:fatal )?error: ([\w./+-]+\.(?:h|hh|hpp|hxx)): No such file or directory")
_LIBRARY = re.compile(r"cannot find -l([\w.+-]+)")
_PKG_CONFIG = re.compile(r"Package '?([\w.+-]+)'?,? (?:was not found in the pkg-config search path|required by .* not found)")
_TOOL = re.compile(
    r"(?:\b([\w.+-]+-config|pg_config|pkg-config|cmake|swig|nasm|yasm)(?: executable)?: (?:\d+: )?(?:command )?not found"
    r"|Error: ([\w.+-]+-config|pg_config) executable not found"
    r"|\b([\w.+-]+-config|pg_config)\b[^\n]{0,40}: No such file or directory)"
)
_CXX = re.compile(r"cannot execute '?cc1plus'?|error trying to exec '?cc1plus'?|\bg\+\+: (?:command )?not found|command 'g\+\+' failed|"
                  r"x86_64-linux-gnu-g\+\+: No such file or directory|unable to execute '?(?:x86_64-linux-gnu-)?g\+\+'?")

_ERE_SPECIAL = set(".^$*+?()[]{}|\\")


def ere(text: str) -> str:
    """`text` as a literal in a POSIX extended regular expression (apt-file's)."""
    return "".join("\\" + c if c in _ERE_SPECIAL else c for c in text)


@dataclass(frozen=True)
class Missing:
    kind: str  # header, library, tool, pkg-config, compiler
    name: str  # libxml/xmlversion.h, pq, pg_config, libffi, g++
    evidence: str  # the log's line

    @property
    def pattern(self) -> str:
        """Which file of the package index provides it (an ERE on the path; apt-file matches
        paths without their leading slash, so none is anchored at the start)."""
        if self.kind == "header":
            return f"/include/(.+/)?{ere(self.name)}$"
        if self.kind == "library":
            return f"/lib/(x86_64-linux-gnu/)?lib{ere(self.name)}\\.(so|a)$"
        if self.kind == "tool":
            return f"/s?bin/{ere(self.name)}$"
        if self.kind == "pkg-config":
            return f"/pkgconfig/{ere(self.name)}\\.pc$"
        return f"/bin/{ere(self.name)}$"

    def query(self, family: str) -> Query:
        """What to ask the family's index: Debian's apt-file takes the regex; Red Hat's yum takes
        globs (`*/include/*libpq-fe.h`), whose answers the regex then narrows (libraries in
        lib64 there)."""
        if family != "redhat":
            return Query(self.pattern)
        name, literal = ere(self.name), glob_literal(self.name)
        if self.kind == "header":
            return Query(f"/include/(.+/)?{name}$", (f"*/include/*{literal}",))
        if self.kind == "library":
            return Query(f"/lib(64)?/lib{name}\\.(so|a)$", (f"*/lib{literal}.so", f"*/lib{literal}.a"))
        if self.kind == "tool":
            return Query(f"/s?bin/{name}$", (f"*bin/{literal}",))
        if self.kind == "pkg-config":
            return Query(f"/pkgconfig/{name}\\.pc$", (f"*/pkgconfig/{literal}.pc",))
        return Query(f"/bin/{name}$", (f"*/bin/{literal}",))

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def missing(log: str) -> list[Missing]:
    """Everything the log says was missing, in the order it says it, each once."""
    found: dict[tuple[str, str], Missing] = {}
    for line in log.splitlines():
        line = line.strip()
        for kind, pattern in (("header", _HEADER), ("library", _LIBRARY), ("pkg-config", _PKG_CONFIG), ("tool", _TOOL)):
            for match in pattern.finditer(line):
                name = next(g for g in match.groups() if g)
                found.setdefault((kind, name), Missing(kind, name, line[:300]))
        if _CXX.search(line):
            found.setdefault(("compiler", "g++"), Missing("compiler", "g++", line[:300]))
    return list(found.values())


# Import errors that are the platform's, not the package's: proposed for skip_imports.
_NOT_OURS = re.compile(r"No module named '?(_?winreg|msvcrt|_winapi|winerror|win32\w*|pywintypes|ctypes\.wintypes)'?"
                       r"|only (?:available|supported) on Windows|invalid syntax|SyntaxError|Missing parentheses in call to 'print'")


def proposable(module: str, error: str) -> bool:
    """Whether an import failure is the platform's or a helper module's, not a fault of the build:
    a Windows-only or Python-2-only module, or a submodule that fails on its own terms (a build-time
    helper reading a file it does not ship, one that needs distutils). Never a missing module or
    library (a missing dependency or system package), nor the package's top level."""
    if _NOT_OURS.search(error):
        return True
    if re.search(r"No module named|cannot open shared object file|undefined symbol|ImportError", error):
        return False
    return "." in module
