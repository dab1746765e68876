# An application's test environment inside a runtime guest: a fresh environment with published
# artifacts installed offline exactly as the test stage installs them (check.py's own functions),
# then imports.py's `try` run with that environment's python.
#
#   PYTHON appenv.py SPEC.json
#
# SPEC: format (egg|wheel), artifacts (in install order), virtualenv, pip, work, out, try (specs).
# Writes OUT/env-result.json and OUT/try-result.json. Exits 0 if the environment was made (the
# imports' verdict is in try-result.json). Runs unchanged on Python 2.6, 2.7 and 3.6+.
from __future__ import absolute_import, print_function

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (GuestError, capture, describe_exit, fresh_dir, load_spec, native_text, one_line, say, tail,  # noqa: E402
                     write_json)
from check import install_egg, install_wheel, make_env, site_dirs  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRY_TIMEOUT = 3600


def make(spec, result):
    work = spec["work"]
    for sub in ("", "home", "egg-cache"):
        if not os.path.isdir(os.path.join(work, sub)):
            os.makedirs(os.path.join(work, sub))
    fresh_dir(os.path.join(work, "empty"))
    started = time.time()
    env = make_env(spec, work)
    env.site = site_dirs(env, work)[0]
    say("%s in %.1f s; site folder %s" % (env.how, time.time() - started, env.site))
    for artifact in spec["artifacts"]:
        if spec["format"] == "egg":
            _, how = install_egg(artifact, env, work, result["notes"])
        else:
            how = install_wheel(artifact, env, spec, work)
        result["installed"].append({"artifact": os.path.basename(artifact), "how": how})
    return env


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: appenv.py SPEC.json\n")
        return 2
    spec = load_spec(argv[1])
    out = spec["out"]
    result = {"ok": False, "installed": [], "notes": [], "error": None}
    try:
        env = make(spec, result)
        result["python"] = env.python
        result["ok"] = True
    except GuestError as exc:
        result["error"] = native_text(exc)
    except Exception as exc:  # a bug here must still leave a result the host can read
        import traceback
        traceback.print_exc()
        result["error"] = "appenv.py crashed: %s: %s" % (type(exc).__name__, one_line(native_text(exc)))
    write_json(os.path.join(out, "env-result.json"), result)
    if not result["ok"]:
        say("the environment could not be made: %s" % result["error"])
        return 1
    if spec["try"]:
        argv = [env.python, os.path.join(HERE, "imports.py"), "try", "--out",
                os.path.join(out, "try-result.json")] + spec["try"]
        code, output = capture(argv, cwd=os.path.join(spec["work"], "empty"),
                               env=env.variables(spec["work"]), timeout=TRY_TIMEOUT, echo=True)
        if code not in (0, 1):
            say("imports.py try failed (%s): %s" % (describe_exit(code), one_line(tail(output, 3))))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
