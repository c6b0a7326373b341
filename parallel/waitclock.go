package parallel

import (
	"sync"
	"sync/atomic"
	"time"
)

// WaitClock adds up the time a worker's step is blocked on communication: the
// moments when it has nothing to compute until a message arrives (a key/value
// block that is not here yet, the end of a gradient all-reduce). Receives that
// overlap computation are not counted. The total is also kept by kind (what the
// step was waiting for), so a slow step can be told apart: a peer still
// computing, or bytes still on the wire. Safe for concurrent use; nil is a no-op.
type WaitClock struct {
	nanos atomic.Int64
	mu    sync.Mutex
	kinds map[string]time.Duration
}

// Since adds the time since start, under kind.
func (w *WaitClock) Since(kind string, start time.Time) {
	if w == nil {
		return
	}
	d := time.Since(start)
	w.nanos.Add(int64(d))
	w.mu.Lock()
	if w.kinds == nil {
		w.kinds = map[string]time.Duration{}
	}
	w.kinds[kind] += d
	w.mu.Unlock()
}

// Seconds is the total so far.
func (w *WaitClock) Seconds() float64 {
	if w == nil {
		return 0
	}
	return time.Duration(w.nanos.Load()).Seconds()
}

// Kinds is the total so far by kind, in seconds.
func (w *WaitClock) Kinds() map[string]float64 {
	out := map[string]float64{}
	if w == nil {
		return out
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, d := range w.kinds {
		out[k] = d.Seconds()
	}
	return out
}

// SentElems is the exact number of elements AllReduceSum sends from the rank at
// position me of a P-rank group, for n elements in all.
func SentElems(n, P, me int) int {
	if P <= 1 {
		return 0
	}
	seg := func(i int) int {
		i = ((i % P) + P) % P
		return (i+1)*n/P - i*n/P
	}
	total := 0
	for s := range P - 1 {
		total += seg(me-s) + seg(me+1-s)
	}
	return total
}
