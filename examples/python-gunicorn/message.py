MESSAGE = "hello from gunicorn"
