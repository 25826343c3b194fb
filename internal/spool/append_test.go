package spool

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/bridgehead-dev/bridgehead/internal/spool/fsys"
)

// tmpLog records, in order, the creations of segment files in tmp/ and their renames out of it.
type tmpLog struct {
	fsys.FS
	mu     sync.Mutex
	events []string
}

func (l *tmpLog) add(ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *tmpLog) CreateExcl(name string) (fsys.File, error) {
	if strings.HasSuffix(name, "-seg.tmp") {
		l.add("create")
	}
	return l.FS.CreateExcl(name)
}

func (l *tmpLog) Rename(oldname, newname string) error {
	err := l.FS.Rename(oldname, newname)
	if strings.HasSuffix(oldname, "-seg.tmp") {
		l.add("rename")
	}
	return err
}

// TestNextSegmentFileCreatedAfterTheLastLeftTmp: the file created ahead for the next commit is
// created only once the previous commit's file has been renamed out of tmp/, never beside it.
func TestNextSegmentFileCreatedAfterTheLastLeftTmp(t *testing.T) {
	l := &tmpLog{FS: fsys.OS{}}
	s, err := Open(t.TempDir(), Options{FS: l})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := s.Append(context.Background(), testMessages(1)...); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, ev := range l.events {
		if want := [2]string{"create", "rename"}[i%2]; ev != want {
			t.Fatalf("event %d is %s, want %s: %v", i, ev, want, l.events)
		}
	}
}
