package sink

import "github.com/bridgehead-dev/bridgehead/internal/message"

// FramingAllowance bounds what a sink's framing adds to an event beyond EventBytes: a Kafka
// record batch of one record, an AMQP message's header, annotations and encoding of its
// application properties. Both sinks refuse an event whose EventBytes passes their limit less
// this, so an API that refuses what passes the same limit less this never acknowledges what
// the sink will refuse.
const FramingAllowance = 1024

// EventBytes is the size of m's event as a sink sends it, framing aside: its body in mode, the
// headers (Kafka) or application properties (Event Hubs) that carry m's properties and its
// correlationId, senderId and stamp, and its key (Kafka: the senderId) or message id (Event
// Hubs: the correlationId).
func EventBytes(m *message.Message, mode BodyMode) (int, error) {
	n := idBytes(m)
	for k, v := range m.Properties {
		n += len(k) + len(v)
	}
	if mode == BodyRaw {
		return n + len(m.Value), nil
	}
	body, err := Body(m, mode)
	if err != nil {
		return 0, err
	}
	return n + len(body), nil
}

// EventBytesAtMost is an upper bound of EventBytes(m, mode) that costs no encoding: every byte
// of the value and properties escaped into six.
func EventBytesAtMost(m *message.Message, mode BodyMode) int {
	n := 160 + idBytes(m)
	raw := len(m.Value)
	for k, v := range m.Properties {
		raw += len(k) + len(v)
		n += len(k) + len(v) + 6 // the envelope's quotes, colon and comma
	}
	if mode == BodyRaw {
		return n + len(m.Value)
	}
	return n + 6*raw + len(m.SenderID) + 6*len(m.Stamp)
}

// idBytes is what identifies m in an event, beside its body: the correlationId, senderId,
// stamp and priority headers, and a key or message id of the larger of a senderId and a UUID.
func idBytes(m *message.Message) int {
	return len("correlationId") + 36 + len("senderId") + len(m.SenderID) + len("stamp") + len(m.Stamp) +
		len("priority") + 4 + max(len(m.SenderID), 36)
}

// ReservedProperty reports whether name is one of the properties a sink sets on every event
// (correlationId, senderId, stamp, priority): they win over a message property of the same name,
// because consumers dedupe and route by them.
func ReservedProperty(name string) bool {
	switch name {
	case "correlationId", "senderId", "stamp", "priority":
		return true
	}
	return false
}
