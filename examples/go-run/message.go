package main

const message = "hello from go run"
