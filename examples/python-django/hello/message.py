MESSAGE = "hello from django"
