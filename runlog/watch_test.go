package runlog

import (
	"errors"
	"strings"
	"testing"
)

type countObserver struct {
	n   int
	err error
}

func (c *countObserver) Observe(any) error { c.n++; return c.err }

func TestWatchDropsFailingObservers(t *testing.T) {
	var warn strings.Builder
	good, bad := &countObserver{}, &countObserver{err: errors.New("tensorboard: disk full")}
	var nilExp *Exporter
	var nilTB *TensorBoard
	w := NewWatch(&warn, good, bad, nilExp, nilTB)
	for range 3 {
		w.Observe(map[string]any{"step": 1})
	}
	tests := []struct {
		name      string
		got, want int
	}{
		{"the good observer sees every step", good.n, 3},
		{"the failing one is asked once", bad.n, 1},
		{"one warning", strings.Count(warn.String(), "\n"), 1},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, tt.got, tt.want)
		}
	}
	if want := "torus: warning: tensorboard: disk full"; !strings.HasPrefix(warn.String(), want) {
		t.Errorf("warning %q, want it to start %q", warn.String(), want)
	}
}
