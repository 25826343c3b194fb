// Command fsyncref is the "fsync floor" of scripts/bench-http.sh: for each POST it reads the
// body, appends it and a newline to one file under a mutex, fdatasyncs the file and only then
// answers 200 with a small JSON body. One request, one fdatasync, nothing shared between
// requests: what a lone client of any durable server pays at least.
//
// It prints "listening on http://ADDR" once it accepts connections and serves until killed; a
// failed write or fdatasync ends it (a later success would not make the earlier bodies durable).
//
//	go run ./test/benchhttp/fsyncref -listen 127.0.0.1:0 -file /work/fsyncref.log
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	path := flag.String("file", "fsyncref.log", "file the bodies are appended to")
	flag.Parse()
	f, err := os.OpenFile(*path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	fd := int(f.Fd())
	var mu sync.Mutex // serialises the append and its fdatasync
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		_, err = f.Write(append(body, '\n'))
		if err == nil {
			err = unix.Fdatasync(fd)
		}
		mu.Unlock()
		if err != nil {
			// The file's state is unknown after a failed write or fdatasync: never answer again.
			log.Fatal(err)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true}`+"\n")
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
