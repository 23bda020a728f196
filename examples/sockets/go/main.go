// The sockets example, Go: serve the socket reload passes (fd 3, systemd's protocol) when
// LISTEN_PID names this process, else bind PORT. coreos/go-systemd's activation.Listeners does
// the same check. On SIGTERM, Shutdown stops accepting and finishes the requests in flight;
// the connections that arrive meanwhile wait in reload's socket for the next run.
package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func listener() net.Listener {
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") != "" {
		l, err := net.FileListener(os.NewFile(3, "listen"))
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("go: serving the inherited socket %s", l.Addr())
		return l
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("go: listening on %s", l.Addr())
	return l
}

func main() {
	message, err := os.ReadFile("message.txt")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(message)
	})}
	done := make(chan struct{})
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		srv.Shutdown(context.Background())
		close(done)
	}()
	if err := srv.Serve(listener()); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
}
