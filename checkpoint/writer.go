package checkpoint

// Writer: checkpoints written in the background, one at a time, then pruned.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Writer writes snapshots in the background, one at a time, and after each
// commit removes the checkpoints its Policy does not keep. Submit and Wait may be
// called from any goroutine; they take turns.
type Writer struct {
	dir    string
	policy Policy

	mu      sync.Mutex
	pending chan error // the result of the write in flight; nil when none
}

// NewWriter creates ckptDir if needed, removes the leftovers of an interrupted
// write there (see Clean) and returns a writer into it.
func NewWriter(ckptDir string, p Policy) (*Writer, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(ckptDir, 0o755); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := Clean(ckptDir); err != nil {
		return nil, err
	}
	return &Writer{dir: ckptDir, policy: p}, nil
}

// Submit waits for the previous write, returning its error if it failed (s is
// then not written), and starts writing s in the background. s belongs to the
// writer from now on.
func (w *Writer) Submit(s *Snapshot) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.wait(); err != nil {
		return err
	}
	if s == nil {
		return errors.New("checkpoint: submit: no snapshot")
	}
	done := make(chan error, 1)
	w.pending = done
	go func() {
		lowPriority()
		done <- w.write(s)
	}()
	return nil
}

// Wait waits for the write in flight, if any, and returns its error.
func (w *Writer) Wait() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wait()
}

func (w *Writer) wait() error {
	if w.pending == nil {
		return nil
	}
	err := <-w.pending
	w.pending = nil
	return err
}

// write saves s, then applies the policy.
func (w *Writer) write(s *Snapshot) error {
	if s == nil {
		return errors.New("checkpoint: save: no snapshot")
	}
	if _, err := saveAt(w.dir, s, true); err != nil {
		return err
	}
	if _, err := Prune(w.dir, w.policy); err != nil {
		return fmt.Errorf("checkpoint: step %d is saved, but: %w", s.Step, err)
	}
	return nil
}

// Prune removes the checkpoints of ckptDir that p does not keep and returns their
// paths. Kept: the newest p.KeepLast (all when 0), every one whose step is a
// multiple of p.KeepEvery (none more when 0), and always the one latest names.
// A checkpoint is first renamed to step-NNNNNN.del.tmp, then removed, so a crash
// midway leaves no partial folder under a checkpoint's name.
func Prune(ckptDir string, p Policy) ([]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	steps, err := stepFolders(ckptDir)
	if err != nil {
		return nil, err
	}
	latest, err := readLatest(ckptDir)
	if err != nil && !errors.Is(err, ErrNoCheckpoint) {
		return nil, fmt.Errorf("checkpoint: prune %s: %w", ckptDir, err)
	}
	var removed []string
	for i, step := range steps {
		name := Name(step)
		keep := p.KeepLast == 0 || i >= len(steps)-p.KeepLast ||
			p.KeepEvery > 0 && step%p.KeepEvery == 0 || name == latest
		if keep {
			continue
		}
		if err := remove(ckptDir, name); err != nil {
			return removed, fmt.Errorf("checkpoint: prune %s: %w", ckptDir, err)
		}
		removed = append(removed, filepath.Join(ckptDir, name))
	}
	return removed, nil
}

// remove deletes the checkpoint folder name: renamed out of the way first, durably.
func remove(ckptDir, name string) error {
	del := filepath.Join(ckptDir, name+".del.tmp")
	if err := os.RemoveAll(del); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(ckptDir, name), del); err != nil {
		return err
	}
	if err := syncDir(ckptDir); err != nil {
		return err
	}
	return os.RemoveAll(del)
}

// stepFolders lists the steps of ckptDir's checkpoint folders (step-NNNNNN), ascending.
func stepFolders(ckptDir string) ([]int, error) {
	entries, err := os.ReadDir(ckptDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	var steps []int
	for _, e := range entries {
		if step, ok := stepOf(e.Name()); ok && e.IsDir() {
			steps = append(steps, step)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// Clean removes what an interrupted Save or Prune leaves in ckptDir: the folders
// step-*.tmp (a checkpoint being written, or being deleted) and the file
// latest.tmp. It returns the removed paths, for the caller to report. It must not
// run while a write into ckptDir is in flight. A missing ckptDir is clean.
func Clean(ckptDir string) ([]string, error) {
	entries, err := os.ReadDir(ckptDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: clean: %w", err)
	}
	var removed []string
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".tmp") || !strings.HasPrefix(name, "step-") && name != LatestFile+".tmp" {
			continue
		}
		path := filepath.Join(ckptDir, name)
		if err := os.RemoveAll(path); err != nil {
			return removed, fmt.Errorf("checkpoint: clean: %w", err)
		}
		removed = append(removed, path)
	}
	return removed, nil
}
