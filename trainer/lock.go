package trainer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// A run directory is one run's: Lock takes RUN/torus.lock, an advisory lock
// (flock) held while the process lives, whose content names the holder. A
// second torus on the same directory (a scheduler's retry of a run still
// going, a typo in --out) is refused naming the holder, before it writes
// anything. The kernel drops the lock of a process that dies, so a lock file
// left by a dead run is recognised (its content names a holder, but no one
// holds it) and taken over, with a note.

// LockHolder is what the lock file says of the process holding it.
type LockHolder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Command string    `json:"command"`
}

func (h LockHolder) String() string {
	return fmt.Sprintf("pid %d on host %s (%s, since %s)", h.PID, h.Host, h.Command, h.Since.Format(time.RFC3339))
}

// RunLock is a held run directory lock.
type RunLock struct {
	f *os.File
	// Stale is the holder a lock file named whose process had died, when
	// Lock took it over.
	Stale *LockHolder
}

// ErrRunDirLocked is what Lock's error wraps when another process holds the directory.
var ErrRunDirLocked = errors.New("run directory in use")

// Lock creates the run directory if needed and takes its lock for this
// process, or fails naming the process that holds it.
func (d RunDir) Lock(command string) (*RunLock, error) {
	if err := os.MkdirAll(string(d), 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	path := filepath.Join(string(d), "torus.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run directory lock: %w", err)
	}
	prev := readHolder(f)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another process"
			if prev != nil {
				who = prev.String()
			}
			return nil, fmt.Errorf("%w: %s is held by %s: wait for that run to end or stop it, or choose another --out", ErrRunDirLocked, path, who)
		}
		return nil, fmt.Errorf("run directory lock %s: %w", path, err)
	}
	host, _ := os.Hostname()
	me := LockHolder{Host: host, PID: os.Getpid(), Since: time.Now().UTC().Truncate(time.Second), Command: command}
	b, _ := json.Marshal(me)
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(append(b, '\n'), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("run directory lock %s: %w", path, err)
	}
	l := &RunLock{f: f}
	if prev != nil && (prev.PID != me.PID || prev.Host != me.Host) {
		l.Stale = prev
	}
	return l, nil
}

// Unlock releases the lock, leaving the file empty: the next run sees no holder.
func (l *RunLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Truncate(0)
	err = errors.Join(err, l.f.Close()) // closing drops the flock
	l.f = nil
	return err
}

// readHolder is the holder a lock file names (nil when it is empty or unreadable).
func readHolder(f *os.File) *LockHolder {
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	var h LockHolder
	if n == 0 || json.Unmarshal(b[:n], &h) != nil || h.PID == 0 {
		return nil
	}
	return &h
}
