# The python-gunicorn example: a WSGI app (no framework) served by gunicorn's workers; each
# answer says which worker served it.
import os

from message import MESSAGE


def app(environ, start_response):
    body = f"{MESSAGE} (worker {os.getpid()})\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
