package eventhubs

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ErrConnectionString is wrapped by every error ParseConnectionString returns.
var ErrConnectionString = errors.New("invalid Event Hubs connection string")

// ConnectionString is a parsed Event Hubs connection string
// (`Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=<name>;SharedAccessKey=<key>[;EntityPath=<hub>]`).
// Its String, GoString and LogValue never show the key or the signature.
type ConnectionString struct {
	// Endpoint is the Endpoint value as given (sb://host[:port]/).
	Endpoint string
	// Host is the endpoint's host, without port: the namespace's FQDN.
	Host string
	// Port is the endpoint's port, empty when none was given.
	Port string
	// SharedAccessKeyName names the SAS policy.
	SharedAccessKeyName string
	// SharedAccessKey is the policy's key (secret).
	SharedAccessKey string
	// SharedAccessSignature is a pre-computed SAS token (secret), the alternative to a key.
	SharedAccessSignature string
	// EntityPath names the event hub, when the string is scoped to one.
	EntityPath string
	// UseDevelopmentEmulator selects plain AMQP without TLS (the Event Hubs emulator, test peers).
	UseDevelopmentEmulator bool
}

// Namespace returns host[:port], the fully qualified namespace the SDK dials.
func (c ConnectionString) Namespace() string {
	if c.Port == "" {
		return c.Host
	}
	return net.JoinHostPort(c.Host, c.Port)
}

// String describes c without its secrets.
func (c ConnectionString) String() string {
	auth := "SharedAccessKeyName=" + c.SharedAccessKeyName + ";SharedAccessKey=<redacted>"
	if c.SharedAccessSignature != "" {
		auth = "SharedAccessSignature=<redacted>"
	}
	s := "Endpoint=" + c.Endpoint + ";" + auth
	if c.EntityPath != "" {
		s += ";EntityPath=" + c.EntityPath
	}
	if c.UseDevelopmentEmulator {
		s += ";UseDevelopmentEmulator=true"
	}
	return s
}

// GoString keeps %#v from printing the secrets.
func (c ConnectionString) GoString() string { return "eventhubs.ConnectionString(" + c.String() + ")" }

// LogValue keeps slog from printing the secrets.
func (c ConnectionString) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ParseConnectionString parses an Event Hubs connection string: `;`-separated `Key=Value` pairs
// with case-insensitive keys Endpoint, SharedAccessKeyName, SharedAccessKey,
// SharedAccessSignature, EntityPath and UseDevelopmentEmulator (others are ignored, as the SDK
// does). Errors name the missing or malformed part and never repeat a value, so they are safe to
// log even when the string was mangled.
func ParseConnectionString(s string) (ConnectionString, error) {
	var c ConnectionString
	s = strings.TrimSpace(s)
	if s == "" {
		return c, fmt.Errorf("%w: empty", ErrConnectionString)
	}
	seen := map[string]bool{}
	var emulator string
	for i, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue // a trailing or doubled ';'
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return ConnectionString{}, fmt.Errorf("%w: part %d has no '=' (want Key=Value pairs separated by ';')", ErrConnectionString, i+1)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		var dst *string
		switch strings.ToLower(k) {
		case "endpoint":
			k, dst = "Endpoint", &c.Endpoint
		case "sharedaccesskeyname":
			k, dst = "SharedAccessKeyName", &c.SharedAccessKeyName
		case "sharedaccesskey":
			k, dst = "SharedAccessKey", &c.SharedAccessKey
		case "sharedaccesssignature":
			k, dst = "SharedAccessSignature", &c.SharedAccessSignature
		case "entitypath":
			k, dst = "EntityPath", &c.EntityPath
		case "usedevelopmentemulator":
			k, dst = "UseDevelopmentEmulator", &emulator
		default:
			continue
		}
		if seen[k] {
			return ConnectionString{}, fmt.Errorf("%w: %s appears twice", ErrConnectionString, k)
		}
		seen[k] = true
		if v == "" {
			return ConnectionString{}, fmt.Errorf("%w: %s is empty", ErrConnectionString, k)
		}
		*dst = v
	}

	if c.Endpoint == "" {
		return ConnectionString{}, fmt.Errorf("%w: Endpoint is missing (want Endpoint=sb://<namespace>.servicebus.windows.net/)", ErrConnectionString)
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || u.Scheme != "sb" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.RawQuery != "" {
		return ConnectionString{}, fmt.Errorf("%w: Endpoint must look like sb://<namespace>.servicebus.windows.net/", ErrConnectionString)
	}
	c.Host, c.Port = u.Hostname(), u.Port()
	if c.Port != "" {
		if p, err := strconv.Atoi(c.Port); err != nil || p < 1 || p > 65535 {
			return ConnectionString{}, fmt.Errorf("%w: Endpoint has a bad port", ErrConnectionString)
		}
	}

	switch {
	case c.SharedAccessKey != "" && c.SharedAccessSignature != "":
		return ConnectionString{}, fmt.Errorf("%w: give SharedAccessKey or SharedAccessSignature, not both", ErrConnectionString)
	case c.SharedAccessSignature != "":
		if !strings.HasPrefix(c.SharedAccessSignature, "SharedAccessSignature ") || !strings.Contains(c.SharedAccessSignature, "sig=") || !strings.Contains(c.SharedAccessSignature, "sr=") {
			return ConnectionString{}, fmt.Errorf("%w: SharedAccessSignature must look like \"SharedAccessSignature sr=...&sig=...&se=...&skn=...\"", ErrConnectionString)
		}
	case c.SharedAccessKey != "":
		if c.SharedAccessKeyName == "" {
			return ConnectionString{}, fmt.Errorf("%w: SharedAccessKeyName is missing (it names the policy SharedAccessKey belongs to)", ErrConnectionString)
		}
	default:
		return ConnectionString{}, fmt.Errorf("%w: SharedAccessKey (with SharedAccessKeyName) or SharedAccessSignature is missing", ErrConnectionString)
	}

	if strings.ContainsAny(c.EntityPath, "/?#") {
		return ConnectionString{}, fmt.Errorf("%w: EntityPath must be an event hub name, not a path", ErrConnectionString)
	}
	if emulator != "" {
		b, err := strconv.ParseBool(emulator)
		if err != nil {
			return ConnectionString{}, fmt.Errorf("%w: UseDevelopmentEmulator must be true or false", ErrConnectionString)
		}
		c.UseDevelopmentEmulator = b
	}
	return c, nil
}

// kafkaPort is the port of every Event Hubs namespace's Kafka endpoint (TLS, SASL PLAIN).
const kafkaPort = "9093"

// KafkaSettings translates an Event Hubs connection string into the settings of the namespace's
// Kafka endpoint: brokers `<namespace>:9093` (always TLS), the topic (EntityPath; empty when the
// string is not scoped to a hub: the caller then names it), and SASL PLAIN credentials: user
// `$ConnectionString` and the whole connection string as the password (a secret).
func KafkaSettings(cs string) (brokers []string, topic, user, password string, err error) {
	c, err := ParseConnectionString(cs)
	if err != nil {
		return nil, "", "", "", err
	}
	if c.UseDevelopmentEmulator {
		return nil, "", "", "", fmt.Errorf("%w: the kafka transport needs a real namespace (TLS on port %s); UseDevelopmentEmulator=true works with the amqp transport only", ErrConnectionString, kafkaPort)
	}
	return []string{net.JoinHostPort(c.Host, kafkaPort)}, c.EntityPath, "$ConnectionString", strings.TrimSpace(cs), nil
}
