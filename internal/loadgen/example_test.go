package loadgen_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/loadgen"
)

// Example runs a closed-loop benchmark of 4 workers for 200 ms against a server that answers
// every request 200.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"success":true}`)
	}))
	defer srv.Close()

	r, err := loadgen.New(loadgen.Config{URL: srv.URL, Concurrency: 4, Duration: 200 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := r.Run(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("all answered 200:", res.Status[200] == res.Requests)
	fmt.Println("p99 within max:", res.Latency.P99 <= res.Latency.Max)
	// Output:
	// all answered 200: true
	// p99 within max: true
}
