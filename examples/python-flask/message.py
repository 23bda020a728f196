MESSAGE = "hello from flask"
