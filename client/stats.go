package client

// Stats is a snapshot of a Client's counters since New, for progress and summaries.
type Stats struct {
	// Endpoints has one entry per Config.Endpoints, in order of preference.
	Endpoints []EndpointStats
	// Failovers counts the tries of a Send that went to another endpoint than its previous,
	// failed try: each time traffic moved away from a failing endpoint.
	Failovers int64
}

// EndpointStats are one endpoint's counters.
type EndpointStats struct {
	// Endpoint is as given in Config.Endpoints.
	Endpoint string
	// Healthy reports whether the endpoint is in service now (not in backoff after a failure).
	Healthy bool
	// Acked counts the messages this endpoint acknowledged.
	Acked int64
	// Failures counts the tries that failed at this endpoint by its fault (connection error,
	// timeout, 408, 429, 5xx); refusals of bad requests are not counted.
	Failures int64
}

// Acked returns the total of the endpoints' Acked.
func (s Stats) Acked() int64 {
	var n int64
	for _, e := range s.Endpoints {
		n += e.Acked
	}
	return n
}

// Stats returns the client's counters. It is safe to call at any time, also after Close.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Failovers: c.failovers, Endpoints: make([]EndpointStats, len(c.endpoints))}
	for i, ep := range c.endpoints {
		s.Endpoints[i] = EndpointStats{Endpoint: ep.name, Healthy: ep.healthy, Acked: ep.acked, Failures: ep.failed}
	}
	return s
}

func (c *Client) countAcked(ep *endpoint, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep.acked += int64(n)
}

func (c *Client) countFailure(ep *endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep.failed++
}

func (c *Client) countFailover() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failovers++
}
