package spool

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"
	"time"

	"github.com/bridgehead-dev/bridgehead/internal/message"
)

// A segment's state is its directory and its name; nothing else records it. Every name uses only
// [a-z0-9.-] (Azure Files is case-insensitive and forbids many characters) and stays under 120
// characters. The base name identifies a segment in every state:
//
//	<created ms, 12 hex>-<128 random bits, 26 base32>-<writer, 12 base32>-<count hex>-<bytes hex>[-p<priority>]
//
// The priority (0 highest … 9) is left out at message.DefaultPriority (4): so a segment at the
// default priority has the name the release before priorities gave it, and such a release's
// forwarders still claim it.
//
// and each state adds its own suffix:
//
//	tmp/<base>.tmp                         being written by writer (durable file protocol)
//	open/<created>-<rand>-<writer>.open    a writer's open segment: appended and fsynced per commit
//	recovering/<created>-<rand>-<writer>.o<owner>.d<ms>   an open segment of a dead writer,
//	                                       claimed by owner until the deadline to be re-published
//	ready/<base>.a<N>[.nb<not-before ms>]  committed, delivered N times so far
//	claimed/<base>.a<N>.o<owner>.d<ms>     claimed by owner until the deadline (attempt N)
//	dead/<base>.a<N> + <base>.a<N>.reason  dead-lettered, with the reason
//	quarantine/<base>.a<N> + .reason       damaged, kept for a human
//
// The count and byte size in the name let Stats and the capacity check work from directory
// listings alone, without a stat per file (a round trip each on NFS).

const (
	dirTmp        = "tmp"
	dirOpen       = "open"
	dirRecovering = "recovering"
	dirReady      = "ready"
	dirClaimed    = "claimed"
	dirDead       = "dead"
	dirQuarantine = "quarantine"
	dirHeartbeat  = "hb"

	tsWidth     = 12 // hex digits of a millisecond timestamp: enough until the year 10889
	randWidth   = 26 // base32 characters of 128 random bits
	writerWidth = 12 // base32 characters of 60 random bits
)

// b32 is lowercase base32 without padding: [a-z2-7].
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newWriterID returns a fresh writer incarnation: random per process start, so a restarted
// container (PID 1 again, same host name) never reuses a name.
func newWriterID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return b32.EncodeToString(b[:])[:writerWidth]
}

func randomPart() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return b32.EncodeToString(b[:])
}

func formatMillis(t time.Time) string {
	ms := t.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	s := strconv.FormatInt(ms, 16)
	return strings.Repeat("0", max(0, tsWidth-len(s))) + s
}

func parseMillis(s string) (time.Time, bool) {
	if len(s) != tsWidth {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(s, 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// segBase is the identity of a segment, the same in every state.
type segBase struct {
	Created time.Time
	Rand    string
	Writer  string
	Count   int
	Bytes   int64
	// Priority is the priority of every message in the segment (0 highest).
	Priority uint8

	id string // the formatted base name
}

func newBase(created time.Time, writer string, prio uint8, count int, bytes int64) segBase {
	return makeBase(created, randomPart(), writer, prio, count, bytes)
}

// makeBase is newBase with a given random part: a sealed open segment keeps the one its open
// name and header carry.
func makeBase(created time.Time, rand, writer string, prio uint8, count int, bytes int64) segBase {
	b := segBase{Created: created, Rand: rand, Writer: writer, Count: count, Bytes: bytes, Priority: prio}
	b.id = formatMillis(b.Created) + "-" + b.Rand + "-" + b.Writer + "-" +
		strconv.FormatInt(int64(b.Count), 16) + "-" + strconv.FormatInt(b.Bytes, 16)
	if prio != message.DefaultPriority {
		b.id += "-p" + strconv.Itoa(int(prio))
	}
	return b
}

// String returns the base name, formatted once when the base was made or parsed: claimers
// compare and look up thousands of these per listing.
func (b segBase) String() string { return b.id }

func parseBase(s string) (segBase, bool) {
	f := strings.Split(s, "-")
	prio := uint8(message.DefaultPriority)
	if len(f) == 6 {
		// Only the canonical form: one digit, and never the default, which has no suffix.
		p := f[5]
		if len(p) != 2 || p[0] != 'p' || p[1] < '0' || p[1] > '0'+message.MaxPriority || p[1] == '0'+message.DefaultPriority {
			return segBase{}, false
		}
		prio = p[1] - '0'
		f = f[:5]
	}
	if len(f) != 5 || len(f[1]) != randWidth || len(f[2]) != writerWidth || !isB32(f[1]) || !isB32(f[2]) {
		return segBase{}, false
	}
	created, ok := parseMillis(f[0])
	if !ok {
		return segBase{}, false
	}
	count, err1 := strconv.ParseInt(f[3], 16, 32)
	bytes, err2 := strconv.ParseInt(f[4], 16, 64)
	if err1 != nil || err2 != nil || count < 0 || bytes < 0 || f[3] != strconv.FormatInt(count, 16) || f[4] != strconv.FormatInt(bytes, 16) {
		return segBase{}, false
	}
	// id is the name as it stands on disk, so every rename names the exact file.
	return segBase{Created: created, Rand: f[1], Writer: f[2], Count: int(count), Bytes: bytes, Priority: prio, id: s}, true
}

func isB32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// segName is a parsed segment file name in any state.
type segName struct {
	segBase
	Attempt   int
	NotBefore time.Time // ready only; zero when absent
	Owner     string    // claimed only
	Deadline  time.Time // claimed only
}

func (n segName) ready() string {
	s := n.segBase.String() + ".a" + strconv.Itoa(n.Attempt)
	if !n.NotBefore.IsZero() {
		s += ".nb" + formatMillis(n.NotBefore)
	}
	return s
}

func (n segName) claimed() string {
	return n.segBase.String() + ".a" + strconv.Itoa(n.Attempt) + ".o" + n.Owner + ".d" + formatMillis(n.Deadline)
}

// settled is the name in dead/ and quarantine/.
func (n segName) settled() string { return n.segBase.String() + ".a" + strconv.Itoa(n.Attempt) }

func (n segName) reason() string { return n.settled() + ".reason" }

// parseName parses a segment file name as it appears in state dir; ok is false for anything that
// is not one of ours (dotfiles, .nfsXXXX silly renames, reason files, editor droppings).
func parseName(dir, name string) (segName, bool) {
	parts := strings.Split(name, ".")
	base, ok := parseBase(parts[0])
	if !ok || len(parts) < 2 {
		return segName{}, false
	}
	n := segName{segBase: base}
	if !strings.HasPrefix(parts[1], "a") {
		return segName{}, false
	}
	att, err := strconv.Atoi(parts[1][1:])
	if err != nil || att < 0 || parts[1][1:] != strconv.Itoa(att) {
		return segName{}, false
	}
	n.Attempt = att
	rest := parts[2:]
	switch dir {
	case dirReady:
		switch {
		case len(rest) == 0:
		case len(rest) == 1 && strings.HasPrefix(rest[0], "nb"):
			if n.NotBefore, ok = parseMillis(rest[0][2:]); !ok {
				return segName{}, false
			}
		default:
			return segName{}, false
		}
	case dirClaimed:
		if len(rest) != 2 || !strings.HasPrefix(rest[0], "o") || !strings.HasPrefix(rest[1], "d") {
			return segName{}, false
		}
		n.Owner = rest[0][1:]
		if len(n.Owner) != writerWidth || !isB32(n.Owner) {
			return segName{}, false
		}
		if n.Deadline, ok = parseMillis(rest[1][1:]); !ok {
			return segName{}, false
		}
	case dirDead, dirQuarantine:
		if len(rest) != 0 {
			return segName{}, false
		}
	default:
		return segName{}, false
	}
	return n, true
}

// tmpName names a file being written: a segment (<base>.tmp) or a small file such as a reason or
// heartbeat (<base-like prefix>-<kind>.tmp). Either way the creation time and the writer can be
// read back, which is all orphan collection needs.
func tmpName(created time.Time, writer, kind string) string {
	return formatMillis(created) + "-" + randomPart() + "-" + writer + "-" + kind + ".tmp"
}

// parseTmp returns the creation time and writer of a file in tmp/.
func parseTmp(name string) (created time.Time, writer string, ok bool) {
	if !strings.HasSuffix(name, ".tmp") {
		return time.Time{}, "", false
	}
	f := strings.SplitN(strings.TrimSuffix(name, ".tmp"), "-", 4)
	if len(f) < 3 || len(f[2]) != writerWidth || !isB32(f[2]) {
		return time.Time{}, "", false
	}
	created, ok = parseMillis(f[0])
	return created, f[2], ok
}

// openName is the name of an open segment in open/ (and, with a claim suffix, in recovering/):
// its creation time, its random part and its writer. Count and size are not known until it is
// sealed, so they are not in the name.
type openName struct {
	Created time.Time
	Rand    string
	Writer  string
	// Owner and Deadline are set in recovering/: who is re-publishing it, until when.
	Owner    string
	Deadline time.Time
}

func newOpenName(created time.Time, writer string) openName {
	return openName{Created: created, Rand: randomPart(), Writer: writer}
}

// id is the part common to open/ and recovering/.
func (n openName) id() string {
	return formatMillis(n.Created) + "-" + n.Rand + "-" + n.Writer
}

func (n openName) open() string { return n.id() + ".open" }

func (n openName) recovering() string {
	return n.id() + ".o" + n.Owner + ".d" + formatMillis(n.Deadline)
}

// parseOpenName parses a name in open/ or recovering/ (dir says which).
func parseOpenName(dir, name string) (openName, bool) {
	id, rest, _ := strings.Cut(name, ".")
	f := strings.Split(id, "-")
	if len(f) != 3 || len(f[1]) != randWidth || len(f[2]) != writerWidth || !isB32(f[1]) || !isB32(f[2]) {
		return openName{}, false
	}
	created, ok := parseMillis(f[0])
	if !ok {
		return openName{}, false
	}
	n := openName{Created: created, Rand: f[1], Writer: f[2]}
	switch dir {
	case dirOpen:
		return n, rest == "open"
	case dirRecovering:
		o, d, ok := strings.Cut(rest, ".")
		if !ok || !strings.HasPrefix(o, "o") || !strings.HasPrefix(d, "d") {
			return openName{}, false
		}
		n.Owner = o[1:]
		if len(n.Owner) != writerWidth || !isB32(n.Owner) {
			return openName{}, false
		}
		if n.Deadline, ok = parseMillis(d[1:]); !ok {
			return openName{}, false
		}
		return n, true
	}
	return openName{}, false
}
