package eventhubs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
	"github.com/bridgehead-dev/bridgehead/internal/sink/sinktest"
)

func TestCheck(t *testing.T) {
	refused := sinktest.RefusedAddr(t)
	for _, tc := range []struct {
		name string
		edit func(*amqptest.Server, *Config)
		want string // in the error; empty: passes
	}{
		{"hub reachable", nil, ""},
		{"wrong hub", func(srv *amqptest.Server, c *Config) { c.ConnectionString = srv.ConnectionString("other") },
			`answered for event hub "hub", not "other"`},
		{"credentials refused", func(srv *amqptest.Server, _ *Config) { srv.SetCBSStatus(401) }, "401"},
		{"nothing listening", func(_ *amqptest.Server, c *Config) { c.CustomEndpoint = refused },
			"dial tcp " + refused + ": connect: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := amqptest.NewServer(t, amqptest.Options{})
			s, _ := mustNewSink(t, srv, func(c *Config) {
				c.SendTimeout = 2 * time.Second
				if tc.edit != nil {
					tc.edit(srv, c)
				}
			})
			start := time.Now()
			err := s.Check(context.Background())
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v, want an error naming %q", err, tc.want)
			}
			if el := time.Since(start); el > 4*time.Second {
				t.Fatalf("Check took %v, want it bounded by the 2 s send timeout", el)
			}
			if n := srv.Deliveries(); n != 0 {
				t.Fatalf("Check sent %d deliveries, want none", n)
			}
			if err != nil {
				t.Logf("Check: %v", err)
			}
		})
	}
}
