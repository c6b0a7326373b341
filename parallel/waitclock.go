package parallel

import (
	"sync/atomic"
	"time"
)

// WaitClock adds up the time a worker's step is blocked on communication: the
// moments when it has nothing to compute until a message arrives (a key/value
// block that is not here yet, the end of a gradient all-reduce). Receives that
// overlap computation are not counted. Safe for concurrent use; nil is a no-op.
type WaitClock struct{ nanos atomic.Int64 }

// Since adds the time since start.
func (w *WaitClock) Since(start time.Time) {
	if w != nil {
		w.nanos.Add(int64(time.Since(start)))
	}
}

// Seconds is the total so far.
func (w *WaitClock) Seconds() float64 {
	if w == nil {
		return 0
	}
	return time.Duration(w.nanos.Load()).Seconds()
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
