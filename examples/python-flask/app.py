# The python-flask example: one route, its text in message.py.
from flask import Flask

from message import MESSAGE

app = Flask(__name__)


@app.route("/")
def index():
    return MESSAGE + "\n", 200, {"Content-Type": "text/plain"}
