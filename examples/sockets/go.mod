module example.com/sockets

go 1.19
