module example.com/godlv

go 1.19
