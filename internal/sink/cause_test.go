package sink_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

func TestCause(t *testing.T) {
	_, dialErr := net.Dial("tcp", sinktest.RefusedAddr(t))
	if dialErr == nil {
		t.Fatal("dialling a refused address succeeded")
	}
	plain := errors.New("topic gone")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"no network error", fmt.Errorf("send: %w", plain), nil},
		{"wrapped", fmt.Errorf("metadata: %w", dialErr), dialErr},
		{"joined behind a deadline", errors.Join(context.DeadlineExceeded, fmt.Errorf("last dial: %w", dialErr)), dialErr},
	} {
		got := sink.Cause(tc.err)
		want := tc.want
		if want == nil {
			want = tc.err
		}
		if got != want {
			t.Errorf("%s: Cause(%v) = %v, want %v", tc.name, tc.err, got, want)
		}
	}
}
