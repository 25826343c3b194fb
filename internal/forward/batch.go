package forward

import (
	"github.com/bridgehead-dev/bridgehead/internal/message"
	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

// cut splits msgs, in order, into batches within l (and within maxMessages when it is > 0).
// Batches are sub-slices of msgs. A message larger than l.MaxMessageBytes by the estimate goes
// alone, so that the sink (which knows the real size) refuses it without taking batch-mates
// along; a message larger than l.MaxBatchBytes goes alone too.
func cut(msgs []message.Message, l sink.Limits, maxMessages int) [][]message.Message {
	if l.MaxBatchMessages > 0 && (maxMessages <= 0 || l.MaxBatchMessages < maxMessages) {
		maxMessages = l.MaxBatchMessages
	}
	var out [][]message.Message
	start, bytes := 0, 0
	for i := range msgs {
		n := sink.EncodedSize(&msgs[i], l.Body)
		alone := l.MaxMessageBytes > 0 && n > l.MaxMessageBytes
		full := i > start && ((maxMessages > 0 && i-start >= maxMessages) ||
			(l.MaxBatchBytes > 0 && bytes+n > l.MaxBatchBytes))
		if i > start && (alone || full) {
			out = append(out, msgs[start:i])
			start, bytes = i, 0
		}
		bytes += n
		if alone {
			out = append(out, msgs[i:i+1])
			start, bytes = i+1, 0
		}
	}
	if start < len(msgs) {
		out = append(out, msgs[start:])
	}
	return out
}
