package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bridgehead-dev/bridgehead/client"
)

// Send messages to the on-prem stamp, falling over to the cloud stamp. (The stamps here are
// test imitations; use your stamps' URLs.)
func Example() {
	onprem, cloud := client.NewFakeStamp(), client.NewFakeStamp()
	defer onprem.Close()
	defer cloud.Close()

	c, err := client.New(client.Config{
		Endpoints: []string{onprem.URL, cloud.URL}, // in order of preference
		APIKey:    "",                              // sent as a bearer token when set
		Timeout:   5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // stops the background prober

	acks, err := c.Send(context.Background(),
		client.Message{SenderID: "plant-a", Value: "21.5", ID: "reading-42"},
		client.Message{SenderID: "plant-a", Value: "21.7", Properties: map[string]string{"unit": "C"}},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(acks[0].CorrelationID)
	fmt.Println(acks[0].CorrelationID == client.CorrelationID("plant-a", "reading-42"))
	fmt.Println(acks[1].Endpoint == onprem.URL)
	// Output:
	// d50684e3-fa31-5722-9e18-244ac7aee995
	// true
	// true
}

// When the preferred stamp cannot take messages, the next one gets them at once, with the same
// correlationIds, so a consumer drops any duplicate. OnFailover says why each move happened.
func Example_failover() {
	onprem, cloud := client.NewFakeStamp(), client.NewFakeStamp()
	defer onprem.Close()
	defer cloud.Close()
	onprem.SetMode(client.Mode503) // spool full, Retry-After: 1

	c, err := client.New(client.Config{
		Endpoints: []string{onprem.URL, cloud.URL},
		OnFailover: func(f client.Failover) {
			fmt.Println("failover:", f.From == onprem.URL, f.Cause) // log f.From, f.To and f.Cause
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	acks, err := c.Send(context.Background(), client.Message{SenderID: "plant-a", Value: "21.5", ID: "reading-43"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(acks[0].Endpoint == cloud.URL)
	fmt.Println(acks[0].CorrelationID == client.CorrelationID("plant-a", "reading-43"))
	// Output:
	// failover: true 503 spool-full
	// true
	// true
}

// A message the stamp refuses is not retried; the *Error says what is wrong with which message.
func ExampleError() {
	stamp := client.NewFakeStamp()
	defer stamp.Close()
	c, err := client.New(client.Config{Endpoints: []string{stamp.URL}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Send(context.Background(),
		client.Message{SenderID: "plant-a", Value: "21.5"},
		client.Message{SenderID: "plant-a"}, // no value
	)
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(e.Status, e.Type)
		for _, f := range e.Errors {
			fmt.Printf("message %d: %s: %s\n", f.Index, f.Field, f.Detail)
		}
	}
	// Output:
	// 400 https://bridgehead.dev/problems/invalid-message
	// message 1: value: value is required
}

func ExampleCorrelationID() {
	fmt.Println(client.CorrelationID("plant-a", "reading-42"))
	// Output: d50684e3-fa31-5722-9e18-244ac7aee995
}

// A Batcher sends messages that arrive one at a time (lines of a log, readings) in requests of
// up to a window's worth, with a bounded queue: Add blocks while it is full.
func ExampleBatcher() {
	stamp := client.NewFakeStamp()
	defer stamp.Close()
	c, err := client.New(client.Config{Endpoints: []string{stamp.URL}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	acked := 0
	b, err := c.NewBatcher(client.BatcherConfig{
		Window:  50 * time.Millisecond,                          // a message waits at most this long
		OnAcked: func(acks []client.Ack) { acked += len(acks) }, // on the batcher's goroutine
		OnError: func(msgs []client.Message, err error) { log.Printf("%d not acked: %v", len(msgs), err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []string{"21.5", "21.7", "21.6"} {
		if err := b.Add(ctx, client.Message{SenderID: "plant-a", Value: v}); err != nil {
			log.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil { // sends what is queued; results are in after it
		log.Fatal(err)
	}
	fmt.Println(acked, c.Stats().Endpoints[0].Acked)
	// Output: 3 3
}

// A message the stamp refuses by name costs only itself: the Batcher sends the others of its
// request again, and hands the refused one to OnRejected with the stamp's reasons.
func ExampleBatcherConfig_onRejected() {
	stamp := client.NewFakeStamp()
	defer stamp.Close()
	c, err := client.New(client.Config{Endpoints: []string{stamp.URL}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	acked := 0
	b, err := c.NewBatcher(client.BatcherConfig{
		OnAcked: func(acks []client.Ack) { acked += len(acks) },
		OnRejected: func(m client.Message, errs []client.FieldError, _ *client.Error) {
			fmt.Printf("rejected %q: %s: %s\n", m.Value, errs[0].Field, errs[0].Detail)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for _, m := range []client.Message{{SenderID: "plant-a", Value: "21.5"}, {SenderID: "", Value: "21.7"}, {SenderID: "plant-a", Value: "21.6"}} {
		if err := b.Add(ctx, m); err != nil {
			log.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("acked", acked)
	// Output:
	// rejected "21.7": senderId: senderId is required
	// acked 2
}
