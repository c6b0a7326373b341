package model

import (
	"sort"
	"sync"
	"time"
)

// Process-wide records of the pieces' executions (run notes every call): the wall
// time per kind of piece and the largest output of one call.

// PieceTime is the wall time spent in one kind of piece.
type PieceTime struct {
	Name  string
	Calls int
	Total time.Duration
}

type pieceTimings struct {
	mu sync.Mutex
	m  map[string]*PieceTime
}

var timings = &pieceTimings{m: map[string]*PieceTime{}}

func (t *pieceTimings) add(name string, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.m[name]
	if pt == nil {
		pt = &PieceTime{Name: name}
		t.m[name] = pt
	}
	pt.Calls++
	pt.Total += d
}

type largestOutput struct {
	mu    sync.Mutex
	name  string
	bytes int64
}

var largest = &largestOutput{}

func (l *largestOutput) note(name string, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n > l.bytes {
		l.name, l.bytes = name, n
	}
}

// LargestOutput is the piece whose one call returned the most bytes since the
// last call (process-wide), and that size: the largest transient the step
// holds at once besides what the pieces allocate inside. It resets the record.
func LargestOutput() (piece string, bytes int64) {
	largest.mu.Lock()
	defer largest.mu.Unlock()
	piece, bytes = largest.name, largest.bytes
	largest.name, largest.bytes = "", 0
	return piece, bytes
}

// PieceTimes returns the wall time spent in each kind of piece since the last
// call (process-wide), most expensive first, and resets the counters.
func PieceTimes() []PieceTime {
	timings.mu.Lock()
	defer timings.mu.Unlock()
	var out []PieceTime
	for _, pt := range timings.m {
		out = append(out, *pt)
	}
	timings.m = map[string]*PieceTime{}
	sort.Slice(out, func(i, j int) bool { return out[i].Total > out[j].Total })
	return out
}
