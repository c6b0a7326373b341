package runlog

import (
	"fmt"
	"io"
)

// Observer takes each step's figures: what the step writes to metrics.jsonl
// (Exporter, TensorBoard).
type Observer interface {
	Observe(step any) error
}

// Watch hands each step to its observers. Watching a run never stops it: an
// observer's first error is reported on warn and that observer is dropped.
type Watch struct {
	warn io.Writer
	obs  []Observer
}

// NewWatch watches with obs; nil ones (a nil *Exporter or *TensorBoard too)
// do nothing.
func NewWatch(warn io.Writer, obs ...Observer) *Watch {
	return &Watch{warn: warn, obs: obs}
}

// Observe hands step to every observer still watching.
func (w *Watch) Observe(step any) {
	kept := w.obs[:0]
	for _, o := range w.obs {
		if err := o.Observe(step); err != nil {
			fmt.Fprintf(w.warn, "torus: warning: %v (no more of it this run)\n", err)
			continue
		}
		kept = append(kept, o)
	}
	w.obs = kept
}
