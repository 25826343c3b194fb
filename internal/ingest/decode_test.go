package ingest

import (
	"reflect"
	"testing"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// FuzzDecode: any body, as JSON or NDJSON, is either refused with an error or yields messages
// that pass validation; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"senderId":"01","value":"Hello world!"}`), false)
	f.Add([]byte(`[{"senderId":"a","value":"1","properties":{"k":"v"},"id":"x"},{"SenderId":"b","Value":"2"}]`), false)
	f.Add([]byte("{\"senderId\":\"a\",\"value\":\"1\"}\n\n{\"senderId\":\"b\",\"value\":\"2\"}\n"), true)
	f.Add([]byte(`{"senderId":5}`), false)
	f.Add([]byte("\xff\xfe"), true)
	f.Add([]byte(`{"senderId":"a","value":"\ud800"}`), false)
	f.Add([]byte(`[{"senderId":"a","value":"1","VALUE":"2"}]`), false)
	lim := limits{message: message.Limits{MaxBytes: 1 << 10, MaxProperties: 4}, maxMessages: 16}
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		fast, ferr := decodeBatchFast(body, ndjson, lim.maxMessages)
		raws, err := splitBatch(body, ndjson, lim.maxMessages)
		if err != nil {
			if ferr == nil {
				t.Fatalf("the fast path accepted a body the careful path refuses: %v", err)
			}
			return
		}
		if ferr == nil {
			// The fast path must decode exactly what the careful path decodes.
			if len(fast) != len(raws) {
				t.Fatalf("fast path: %d messages, careful path %d", len(fast), len(raws))
			}
			for i, raw := range raws {
				var in message.Input
				if err := message.Decode(raw, &in); err != nil {
					t.Fatalf("message %d: fast path accepted, careful path: %v", i, err)
				}
				if !reflect.DeepEqual(in, fast[i]) {
					t.Fatalf("message %d: fast %+v, careful %+v", i, fast[i], in)
				}
			}
		}
		if len(raws) == 0 || len(raws) > lim.maxMessages {
			t.Fatalf("%d messages from a body that was accepted", len(raws))
		}
		for i, raw := range raws {
			var in message.Input
			if err := message.Decode(raw, &in); err != nil {
				continue
			}
			m, errs := lim.build(i, &in, "", "s", delivery{priority: 4}, time.Unix(0, 0))
			if errs != nil {
				continue
			}
			if !message.ValidSenderID(m.SenderID) || m.Value == "" || len(m.Properties) > lim.message.MaxProperties {
				t.Fatalf("invalid message passed validation: %+v", m)
			}
		}
	})
}
