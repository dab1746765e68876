"""The interpreter package's test, run by the interpreter it installed, in the platform's bare base
image with nothing but that package (and what its Depends pulled in), offline, as nobody.

    python2.7 interpreter_check.py SPEC.json RESULT.json

SPEC: {"prefix", "modules": [...], "version", "openssl" (a version or null), "family",
"certificate", "key" (a self-signed pair for localhost, for the TLS handshake)}.
It proves: no compiler; the interpreter is the version built; each declared module imports and
each compiled one loaded as an extension; ssl is the private OpenSSL and completes a TLS
handshake over loopback; ldd finds every library of every ELF file under the prefix.
"""
from __future__ import absolute_import, print_function

import json
import os
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check import find_compilers, parse_ldd, toolchain_reasons  # noqa: E402
from _common import say  # noqa: E402


def is_elf(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except (IOError, OSError):
        return False


def elf_files(prefix):
    found = []
    for folder, _dirs, names in os.walk(prefix):
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and is_elf(path):
                found.append(path)
    return sorted(found)


def import_modules(modules, reasons, result):
    import imp
    loaded = {}
    for name in modules:
        try:
            module = __import__(name)
            for part in name.split(".")[1:]:
                module = getattr(module, part)
        except Exception as exc:  # any failure to import is the package's failure
            reasons.append("%s does not import: %s: %s" % (name, type(exc).__name__, exc))
            continue
        where = getattr(module, "__file__", None) or "(built in)"
        loaded[name] = where
        if where.endswith(".so"):
            suffixes = [s for s, _mode, kind in imp.get_suffixes() if kind == imp.C_EXTENSION]
            if not any(where.endswith(s) for s in suffixes):
                reasons.append("%s was not loaded as an extension (%s)" % (name, where))
    result["modules"] = loaded


def tls_handshake(spec, reasons, result):
    """A real handshake over loopback, server and client both this interpreter's ssl."""
    import ssl
    result["openssl"] = ssl.OPENSSL_VERSION
    wanted = spec.get("openssl")
    if wanted and ("OpenSSL %s " % wanted) not in ssl.OPENSSL_VERSION + " ":
        reasons.append("ssl is linked with %s, not the package's OpenSSL %s" % (ssl.OPENSSL_VERSION, wanted))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    errors = []

    def serve():
        try:
            conn, _ = listener.accept()
            server = ssl.wrap_socket(conn, server_side=True, certfile=spec["certificate"], keyfile=spec["key"])
            server.sendall(server.recv(5).upper())
            server.close()
        except Exception as exc:
            errors.append("server: %s" % exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        context = ssl.create_default_context(cafile=spec["certificate"])
        client = context.wrap_socket(socket.create_connection(("127.0.0.1", port), 30), server_hostname="localhost")
        client.sendall(b"hello")
        answer = client.recv(5)
        result["tls"] = {"version": client.version(), "cipher": client.cipher()[0], "answer": answer.decode("ascii")}
        client.close()
        if answer != b"HELLO":
            reasons.append("the TLS echo answered %r" % answer)
    except Exception as exc:
        reasons.append("a TLS handshake over loopback failed: %s: %s" % (type(exc).__name__, exc))
    thread.join(30)
    reasons.extend("a TLS handshake over loopback failed: %s" % e for e in errors)
    say("ssl: %s, handshake %s" % (ssl.OPENSSL_VERSION, result.get("tls")))


def libraries(prefix, reasons, result):
    files = elf_files(prefix)
    result["elf_files"] = len(files)
    missing = {}
    for path in files:
        process = subprocess.Popen(["ldd", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, LC_ALL="C"))
        output = process.communicate()[0].decode("utf-8", "replace")
        libs, versions = parse_ldd(output)
        if libs or versions:
            missing[path] = libs + versions
            reasons.append("%s needs %s, which the base image with the package does not have: the package's "
                           "Depends miss it" % (path, ", ".join(libs + versions)))
    result["missing_libraries"] = missing
    say("ldd: %d ELF files under %s, %d with missing libraries" % (len(files), prefix, len(missing)))


def main(argv):
    with open(argv[1]) as handle:
        spec = json.load(handle)
    reasons = []
    result = {"reasons": reasons, "python": sys.version, "executable": sys.executable}
    compilers = find_compilers(os.environ.get("PATH", ""))
    reasons.extend(toolchain_reasons(spec.get("family") or "debian", compilers, [])[0])
    version = ".".join(str(n) for n in sys.version_info[:3])
    if version != spec["version"]:
        reasons.append("the interpreter is %s, not %s" % (version, spec["version"]))
    if not sys.executable.startswith(spec["prefix"] + "/"):
        reasons.append("the interpreter runs from %s, not from %s" % (sys.executable, spec["prefix"]))
    result["maxunicode"] = sys.maxunicode
    import_modules(spec["modules"], reasons, result)
    if "ssl" in spec["modules"] and "ssl" in result["modules"]:
        tls_handshake(spec, reasons, result)
    libraries(spec["prefix"], reasons, result)
    with open(argv[2], "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
    for reason in reasons:
        say("FAIL: " + reason)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
