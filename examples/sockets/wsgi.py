# The sockets example, gunicorn: `--bind fd://3` serves the socket reload passes (gunicorn's
# master is the command, so LISTEN_PID is its pid). TERM to the master is its graceful stop.
with open("message.txt", "rb") as f:
    MESSAGE = f.read()


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(MESSAGE)))])
    return [MESSAGE]
