package ingest

import (
	"errors"
	"io"
	"sync/atomic"
)

// inflight bounds the request bytes being read and decoded at once (Config.MaxInflightBytes):
// a few maximal batches must meet a 503, not the pod's memory limit. A body's bytes are taken as
// they are read (all at once when its length is declared, before any is read) and given back
// when its handler returns, after the Append that holds its messages.
type inflight struct {
	limit int64
	used  atomic.Int64
}

// errBusy is what reading a body returns when the bytes in flight would pass the bound.
var errBusy = errors.New("too many request bytes in flight")

// take reserves n bytes, or reports false (reserving nothing) if that would pass the limit.
func (f *inflight) take(n int64) bool {
	for {
		u := f.used.Load()
		if u+n > f.limit {
			return false
		}
		if f.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (f *inflight) give(n int64) { f.used.Add(-n) }

// reservingReader takes from f, in steps of at least reserveStep, the bytes it reads beyond
// what was reserved already; held is what it has taken in all.
type reservingReader struct {
	r    io.Reader
	f    *inflight
	max  int64 // the most the body can take: MaxRequestBytes and the byte that shows it is over
	read int64
	held int64
}

const reserveStep = 64 << 10

func (rr *reservingReader) Read(p []byte) (int, error) {
	if need := rr.read + int64(len(p)) - rr.held; need > 0 && rr.held < rr.max {
		// io.ReadAll offers buffers larger than what is left to read: reserve in steps, never
		// past what the body can be.
		need = min(max(need, reserveStep), rr.max-rr.held)
		if !rr.f.take(need) {
			return 0, errBusy
		}
		rr.held += need
	}
	n, err := rr.r.Read(p)
	rr.read += int64(n)
	return n, err
}
