package client

// FakeStamp and NewFakeStamp let the examples (package client_test) run against an imitation
// of a stamp; they exist only in tests.
type FakeStamp = fakeStamp

// NewFakeStamp starts a fake stamp; Close it when done.
func NewFakeStamp() *FakeStamp { return newFakeStamp() }

// Modes for FakeStamp.SetMode.
const (
	ModeOK  = modeOK
	Mode503 = mode503
)
