# The python-fastapi example: one route, its text in message.py.
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from message import MESSAGE

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def index():
    return MESSAGE + "\n"
