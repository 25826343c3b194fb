package amqptest_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"

	"github.com/bridgehead-dev/bridgehead/internal/sink/eventhubs/amqptest"
)

func newProducer(t *testing.T, srv *amqptest.Server) *azeventhubs.ProducerClient {
	t.Helper()
	pc, err := azeventhubs.NewProducerClientFromConnectionString(srv.ConnectionString("hub"), "", &azeventhubs.ProducerClientOptions{
		RetryOptions: azeventhubs.RetryOptions{MaxRetries: 1, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("NewProducerClientFromConnectionString: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = pc.Close(ctx)
	})
	return pc
}

func sendBatch(ctx context.Context, pc *azeventhubs.ProducerClient, key string, bodies ...[]byte) error {
	b, err := pc.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{PartitionKey: &key})
	if err != nil {
		return err
	}
	for i, body := range bodies {
		id := key + "-" + string(rune('a'+i))
		if err := b.AddEventData(&azeventhubs.EventData{Body: body, MessageID: &id, Properties: map[string]any{"n": int64(i)}}, nil); err != nil {
			return err
		}
	}
	return pc.SendEventDataBatch(ctx, b, nil)
}

func TestProducerRoundTrip(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	pc := newProducer(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	big := bytes.Repeat([]byte("x"), 150_000) // several 64 KiB frames
	if err := sendBatch(ctx, pc, "s1", []byte("one"), []byte("two"), big); err != nil {
		t.Fatalf("send: %v", err)
	}
	evs := srv.Events()
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	for i, want := range [][]byte{[]byte("one"), []byte("two"), big} {
		e := evs[i]
		if !bytes.Equal(e.Body, want) || e.PartitionKey != "s1" || e.Entity != "hub" || e.Properties["n"] != int64(i) {
			t.Errorf("event %d: got entity %q key %q props %v body %d bytes", i, e.Entity, e.PartitionKey, e.Properties, len(e.Body))
		}
	}
	if evs[0].MessageID != "s1-a" {
		t.Errorf("got message-id %v, want s1-a", evs[0].MessageID)
	}
	cbs := srv.CBSRequests()
	if len(cbs) == 0 || cbs[0].Audience != "amqp://"+srv.Addr()+"/hub" || cbs[0].TokenType != "servicebus.windows.net:sastoken" {
		t.Errorf("got CBS requests %+v", cbs)
	}

	props, err := pc.GetEventHubProperties(ctx, nil)
	if err != nil {
		t.Fatalf("GetEventHubProperties: %v", err)
	}
	if props.Name != "hub" || len(props.PartitionIDs) != 2 {
		t.Errorf("got properties %+v", props)
	}
	pp, err := pc.GetPartitionProperties(ctx, "1", nil)
	if err != nil {
		t.Fatalf("GetPartitionProperties: %v", err)
	}
	if pp.PartitionID != "1" || !pp.IsEmpty {
		t.Errorf("got partition properties %+v", pp)
	}
}

func TestRejectAndCBS(t *testing.T) {
	srv := amqptest.NewServer(t, amqptest.Options{})
	pc := newProducer(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv.RejectNext(5, "amqp:link:message-size-exceeded", "too big")
	err := sendBatch(ctx, pc, "k", []byte("a"))
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Condition != "amqp:link:message-size-exceeded" {
		t.Fatalf("got %v, want a message-size-exceeded *amqp.Error", err)
	}
	srv.RejectNext(0, "", "")
	if err := sendBatch(ctx, pc, "k", []byte("b")); err != nil {
		t.Fatalf("send after rejects: %v", err)
	}

	srv2 := amqptest.NewServer(t, amqptest.Options{})
	srv2.SetCBSStatus(401)
	pc2 := newProducer(t, srv2)
	err = sendBatch(ctx, pc2, "k", []byte("c"))
	var ehErr *azeventhubs.Error
	if !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeUnauthorizedAccess {
		t.Fatalf("got %v, want an unauthorized *azeventhubs.Error", err)
	}
}
