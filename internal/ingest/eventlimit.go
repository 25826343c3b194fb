package ingest

// eventLimit is the largest event the sink takes (0: no check) and where that number comes from.
type eventLimit struct {
	bytes  int
	source string
}

// SetMaxEventBytes replaces Config.MaxEventBytes while the server runs: serve calls it with what
// the sink says of its destination (a Kafka topic's max.message.bytes), which it may learn only
// after start. source names where n comes from, for the 413's detail ("max.message.bytes of
// Kafka topic readings"). 0 turns the check off. It is safe to call while requests are served.
func (s *Server) SetMaxEventBytes(n int, source string) {
	s.eventLimit.Store(&eventLimit{bytes: max(n, 0), source: source})
}

// maxEventBytes is the event limit in force and its source.
func (s *Server) maxEventBytes() (int, string) {
	if l := s.eventLimit.Load(); l != nil {
		return l.bytes, l.source
	}
	return s.cfg.MaxEventBytes, "--max-event-bytes"
}
