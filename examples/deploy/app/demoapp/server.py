"""GET / answers what this release runs with; GET /health is the smoke test's question.

Python 2.7 and 3 alike: the example deploys it to Debian 11's Python 2.7 and Debian 12's 3.11.
"""
import sys

import dateutil.parser
import markupsafe
import psycopg2
import simplejson
import yaml

from demoapp import VERSION

if sys.version_info[0] == 2:
    from BaseHTTPServer import BaseHTTPRequestHandler, HTTPServer
else:
    from http.server import BaseHTTPRequestHandler, HTTPServer

HEALTHY = True


def facts():
    return {
        "version": VERSION,
        "python": "%d.%d" % sys.version_info[:2],
        "libyaml": bool(yaml.__with_libyaml__),
        "simplejson_speedups": simplejson._import_c_make_encoder() is not None,
        "markupsafe": str(markupsafe.escape("<ok>")),
        "dateutil": dateutil.parser.parse("2024-01-02T03:04:05").isoformat(),
        "libpq": psycopg2.__libpq_version__,
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = (200, "ok\n") if HEALTHY else (500, "unhealthy\n")
        else:
            code, body = 200, simplejson.dumps(facts(), sort_keys=True) + "\n"
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    HTTPServer(("0.0.0.0", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
