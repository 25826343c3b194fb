package eventhubs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/bridgehead-dev/bridgehead/internal/sink"
)

func roots2TLS(roots *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// secret appears in the test strings as the key or signature; no error may repeat it.
const secret = "c2VjcmV0LWtleS12YWx1ZS1kby1ub3QtbG9n="

const goodCS = "Endpoint=sb://bh-prod.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + secret + ";EntityPath=messages"

func TestParseConnectionString(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     ConnectionString
	}{
		{"portal, scoped to a hub", goodCS, ConnectionString{
			Endpoint: "sb://bh-prod.servicebus.windows.net/", Host: "bh-prod.servicebus.windows.net",
			SharedAccessKeyName: "send", SharedAccessKey: secret, EntityPath: "messages"}},
		{"namespace-wide, trailing ;, keys in any case, spaces", " endpoint=sb://ns.servicebus.windows.net ; sharedaccesskeyname=RootManageSharedAccessKey;SHAREDACCESSKEY=" + secret + ";", ConnectionString{
			Endpoint: "sb://ns.servicebus.windows.net", Host: "ns.servicebus.windows.net",
			SharedAccessKeyName: "RootManageSharedAccessKey", SharedAccessKey: secret}},
		{"SAS token", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=ns.servicebus.windows.net&sig=" + secret + "&se=1900000000&skn=send", ConnectionString{
			Endpoint: "sb://ns.servicebus.windows.net/", Host: "ns.servicebus.windows.net",
			SharedAccessSignature: "SharedAccessSignature sr=ns.servicebus.windows.net&sig=" + secret + "&se=1900000000&skn=send"}},
		{"emulator", "Endpoint=sb://localhost:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;EntityPath=eh1", ConnectionString{
			Endpoint: "sb://localhost:5672", Host: "localhost", Port: "5672",
			SharedAccessKeyName: "RootManageSharedAccessKey", SharedAccessKey: "SAS_KEY_VALUE", EntityPath: "eh1", UseDevelopmentEmulator: true}},
		{"unknown keys ignored", goodCS + ";TransportType=Amqp", ConnectionString{
			Endpoint: "sb://bh-prod.servicebus.windows.net/", Host: "bh-prod.servicebus.windows.net",
			SharedAccessKeyName: "send", SharedAccessKey: secret, EntityPath: "messages"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseConnectionString(tc.in)
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got != tc.want {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			if strings.Contains(got.String(), secret) || strings.Contains(fmt.Sprintf("%v %+v %#v", got, got, got), secret) {
				t.Errorf("formatting shows the secret: %v", got)
			}
		})
	}
}

func TestParseConnectionStringErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "  ", "empty"},
		{"no endpoint", "SharedAccessKeyName=send;SharedAccessKey=" + secret, "Endpoint is missing"},
		{"endpoint without scheme", "Endpoint=ns.servicebus.windows.net;SharedAccessKeyName=send;SharedAccessKey=" + secret, "Endpoint must look like sb://"},
		{"https endpoint", "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=" + secret, "Endpoint must look like sb://"},
		{"endpoint with a path", "Endpoint=sb://ns.servicebus.windows.net/hub;SharedAccessKeyName=send;SharedAccessKey=" + secret, "Endpoint must look like sb://"},
		{"bad port", "Endpoint=sb://ns.servicebus.windows.net:99999/;SharedAccessKeyName=send;SharedAccessKey=" + secret, "bad port"},
		{"no key", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send", "SharedAccessKey (with SharedAccessKeyName) or SharedAccessSignature is missing"},
		{"key without name", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=" + secret, "SharedAccessKeyName is missing"},
		{"empty key", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=", "SharedAccessKey is empty"},
		{"key and signature", goodCS + ";SharedAccessSignature=SharedAccessSignature sr=x&sig=" + secret, "not both"},
		{"malformed signature", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=" + secret, "SharedAccessSignature must look like"},
		{"pair without =", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;" + strings.TrimRight(secret, "="), "part 3 has no '='"},
		{"key without its name (the padding makes it look like a pair)", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;" + secret, "SharedAccessKey (with SharedAccessKeyName) or SharedAccessSignature is missing"},
		{"duplicate key", goodCS + ";SharedAccessKey=" + secret, "SharedAccessKey appears twice"},
		{"entity path with a slash", goodCS[:strings.Index(goodCS, ";EntityPath")] + ";EntityPath=hub/Partitions/0", "EntityPath must be an event hub name"},
		{"emulator flag not a bool", goodCS + ";UseDevelopmentEmulator=yes-please", "UseDevelopmentEmulator must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConnectionString(tc.in)
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			if !errors.Is(err, ErrConnectionString) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want ErrConnectionString containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error repeats the secret: %q", err)
			}
		})
	}
}

func TestKafkaSettings(t *testing.T) {
	brokers, topic, user, password, err := KafkaSettings(goodCS)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(brokers) != "[bh-prod.servicebus.windows.net:9093]" || topic != "messages" || user != "$ConnectionString" || password != goodCS {
		t.Errorf("got %v %q %q %q", brokers, topic, user, password)
	}

	// Not scoped to a hub: the caller names the topic. A port in the endpoint is not the Kafka one.
	brokers, topic, _, _, err = KafkaSettings("Endpoint=sb://ns.servicebus.windows.net:5671/;SharedAccessKeyName=send;SharedAccessKey=" + secret)
	if err != nil || fmt.Sprint(brokers) != "[ns.servicebus.windows.net:9093]" || topic != "" {
		t.Errorf("got %v %q %v", brokers, topic, err)
	}

	for _, bad := range []string{"", "Endpoint=sb://x;SharedAccessKeyName=k", "Endpoint=sb://localhost:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"} {
		if _, _, _, _, err := KafkaSettings(bad); err == nil || !errors.Is(err, ErrConnectionString) {
			t.Errorf("KafkaSettings(%q): got %v, want an ErrConnectionString", bad, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	emu := "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
	for _, tc := range []struct {
		name    string
		cfg     Config
		want    string // error substring; empty for valid
		wantHub string
	}{
		{"connection string with EntityPath", Config{ConnectionString: goodCS}, "", "messages"},
		{"EventHub agreeing with EntityPath", Config{ConnectionString: goodCS, EventHub: "messages"}, "", "messages"},
		{"EventHub for a namespace-wide string", Config{ConnectionString: emu, EventHub: "hub"}, "", "hub"},
		{"Entra ID", Config{Namespace: "sb://bh.servicebus.windows.net/", EventHub: "hub"}, "", "hub"},
		{"kafka", Config{ConnectionString: goodCS, Transport: TransportKafka, BodyMode: sink.BodyRaw}, "", "messages"},
		{"nothing", Config{EventHub: "hub"}, "ConnectionString or Namespace is required", ""},
		{"both", Config{ConnectionString: goodCS, Namespace: "bh.servicebus.windows.net"}, "not both", ""},
		{"no hub", Config{ConnectionString: emu}, "EventHub is required", ""},
		{"hub disagrees", Config{ConnectionString: goodCS, EventHub: "other"}, `EventHub "other" differs`, ""},
		{"bad transport", Config{ConnectionString: goodCS, Transport: "http"}, "Transport", ""},
		{"bad body mode", Config{ConnectionString: goodCS, BodyMode: "xml"}, "BodyMode", ""},
		{"negative timeout", Config{ConnectionString: goodCS, SendTimeout: -1}, "SendTimeout", ""},
		{"bad connection string", Config{ConnectionString: "Endpoint=sb://x;SharedAccessKey=" + secret}, "ConnectionString:", ""},
		{"bad namespace", Config{Namespace: "https://x/y", EventHub: "hub"}, "Namespace", ""},
		{"kafka with Entra ID", Config{Namespace: "bh.servicebus.windows.net", EventHub: "hub", Transport: TransportKafka}, "needs a ConnectionString", ""},
		{"kafka with the emulator", Config{ConnectionString: emu, EventHub: "hub", Transport: TransportKafka}, "UseDevelopmentEmulator", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			_, hub, err := cfg.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("got %v", err)
				}
				if hub != tc.wantHub || cfg.SendTimeout != DefaultSendTimeout || cfg.Logger == nil || cfg.Transport == "" || cfg.BodyMode == "" {
					t.Errorf("got hub %q and defaults %+v", hub, cfg)
				}
				s, err := New(context.Background(), tc.cfg) // builds the client without connecting
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error repeats the secret: %v", err)
			}
		})
	}
}

type netErr struct{}

func (netErr) Error() string   { return "connection refused" }
func (netErr) Timeout() bool   { return false }
func (netErr) Temporary() bool { return true }

var _ net.Error = netErr{}

func TestClassify(t *testing.T) {
	amqpErr := func(c string) error {
		return fmt.Errorf("send: %w", &amqp.Error{Condition: amqp.ErrCond(c), Description: "d"})
	}
	for _, tc := range []struct {
		name   string
		err    error
		want   sink.Status
		config bool
	}{
		{"nil", nil, sink.Delivered, false},
		{"too large for the batch", fmt.Errorf("add: %w", azeventhubs.ErrEventDataTooLarge), sink.Permanent, false},
		{"service: message size exceeded", amqpErr("amqp:link:message-size-exceeded"), sink.Permanent, false},
		{"service: decode error", amqpErr("amqp:decode-error"), sink.Permanent, false},
		{"body", fmt.Errorf("%w: x", errBody), sink.Permanent, false},
		{"server busy", amqpErr("com.microsoft:server-busy"), sink.Throttled, false},
		{"service timeout", amqpErr("com.microsoft:timeout"), sink.Transient, false},
		{"quota", amqpErr("amqp:resource-limit-exceeded"), sink.Throttled, false},
		{"detach forced", amqpErr("amqp:link:detach-forced"), sink.Transient, false},
		{"unauthorized condition", amqpErr("amqp:unauthorized-access"), sink.Transient, true},
		{"hub not found", amqpErr("amqp:not-found"), sink.Transient, true},
		{"entity disabled", amqpErr("com.microsoft:entity-disabled"), sink.Transient, true},
		{"SDK unauthorized", &azeventhubs.Error{Code: azeventhubs.ErrorCodeUnauthorizedAccess}, sink.Transient, true},
		{"SDK connection lost", &azeventhubs.Error{Code: azeventhubs.ErrorCodeConnectionLost}, sink.Transient, false},
		{"net error", fmt.Errorf("dial: %w", netErr{}), sink.Transient, false},
		{"deadline", context.DeadlineExceeded, sink.Transient, false},
		{"cancelled", context.Canceled, sink.Transient, false},
		{"unknown", errors.New("something new"), sink.Transient, false},
		{"kafka too large", kerr.MessageTooLarge, sink.Permanent, false},
		{"kafka corrupt", kerr.CorruptMessage, sink.Permanent, false},
		{"kafka not leader", kerr.NotLeaderForPartition, sink.Transient, false},
		{"kafka throttled", kerr.ThrottlingQuotaExceeded, sink.Transient, false},
		{"kafka SASL failed", kerr.SaslAuthenticationFailed, sink.Transient, true},
		{"kafka topic not authorized", kerr.TopicAuthorizationFailed, sink.Transient, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Errorf("classify(%v): got %v, want %v", tc.err, got, tc.want)
			}
			if tc.err != nil {
				if got := isConfigError(tc.err); got != tc.config {
					t.Errorf("isConfigError(%v): got %v, want %v", tc.err, got, tc.config)
				}
			}
		})
	}
}

func ExampleParseConnectionString() {
	cs, err := ParseConnectionString("Endpoint=sb://bh-prod.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=c2VjcmV0;EntityPath=messages")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cs.Namespace(), cs.EntityPath)
	fmt.Println(cs) // never shows the key
	// Output:
	// bh-prod.servicebus.windows.net messages
	// Endpoint=sb://bh-prod.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=<redacted>;EntityPath=messages
}
