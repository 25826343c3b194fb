package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
)

func TestErrorKind(t *testing.T) {
	urlErr := func(err error) error { return &url.Error{Op: "Post", URL: "http://h/x", Err: err} }
	opErr := func(errno syscall.Errno) error {
		return urlErr(&net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: errno}})
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{urlErr(context.Canceled), "canceled"},
		{urlErr(context.DeadlineExceeded), "timeout"},
		{opErr(syscall.ECONNREFUSED), "connection-refused"},
		{opErr(syscall.ECONNRESET), "connection-reset"},
		{opErr(syscall.EPIPE), "connection-reset"},
		{urlErr(io.EOF), "connection-closed"},
		{io.ErrUnexpectedEOF, "connection-closed"},
		{urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "nohost"}}), "dns"},
		{urlErr(errors.New("something new")), "other"},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestThousands(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		prec int
		want string
	}{
		{0, 0, "0"}, {999, 0, "999"}, {1000, 0, "1,000"}, {1234567.89, 1, "1,234,567.9"}, {-12345, 0, "-12,345"},
	} {
		if got := thousands(tc.f, tc.prec); got != tc.want {
			t.Errorf("thousands(%v, %d) = %q, want %q", tc.f, tc.prec, got, tc.want)
		}
	}
}
