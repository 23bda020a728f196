# The sockets example, uvicorn: `uvicorn asgi:app --fd 3` serves the socket reload passes
# (uvicorn does not read LISTEN_PID). TERM is uvicorn's graceful stop. A bare ASGI app: no
# framework needed.
with open("message.txt", "rb") as f:
    MESSAGE = f.read()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(MESSAGE)).encode())]})
    await send({"type": "http.response.body", "body": MESSAGE})
