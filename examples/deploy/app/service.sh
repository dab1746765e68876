#!/bin/sh
# The demo service's start, stop and smoke test, as the deploy hooks call them:
#   sh ROOT/current/app/service.sh start|stop|smoke ROOT [PORT]
# A real fleet would use its init system (systemctl, service, rc.d); this keeps the example
# self-contained on servers that have none.
set -u
action=$1 root=$2 port=${3:-8000}
pidfile=$root/demo.pid
case $action in
start)
    cd "$root" || exit 1
    # The current release's python: the symlink is resolved at start, as a real service's is.
    nohup "$root/current/bin/python" -m demoapp.server "$port" >"$root/demo.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    ;;
stop)
    if [ -f "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        rm -f "$pidfile"
    fi
    ;;
smoke)
    # Up to 10 s for the service to listen, then /health must say ok.
    exec "$root/current/bin/python" - "$port" <<'PY'
import sys, time
try:
    from urllib2 import urlopen
except ImportError:
    from urllib.request import urlopen
deadline = time.time() + 10
while True:
    try:
        body = urlopen("http://127.0.0.1:%s/health" % sys.argv[1], timeout=2).read()
        sys.exit(0 if body.strip() == b"ok" else 1)
    except Exception as exc:
        if getattr(exc, "code", None) or time.time() > deadline:  # an HTTP error is an answer
            sys.stderr.write("smoke test: %s\n" % exc)
            sys.exit(1)
        time.sleep(0.1)
PY
    ;;
*)
    echo "usage: service.sh start|stop|smoke ROOT [PORT]" >&2
    exit 2
    ;;
esac
