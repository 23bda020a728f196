MESSAGE = "hello from fastapi"
