package data

import (
	"runtime"
)

// Tokenizing ahead. A lane knows which documents it reads next (the epoch's
// order, every K-th from its position), so when it starts one it hands the
// next LoaderConfig.Prefetch to goroutines that read and tokenize them while
// the step runs; by the time the lane reaches them their tokens are waiting.
// The tokens of a document do not depend on when or where it was tokenized,
// so batches are the same with prefetching or without.

// ahead is the result of one document's tokenization, started ahead of need.
type ahead struct {
	done chan struct{} // closed once toks, loss and err are set
	toks []int32
	loss []bool
	err  error
}

// prefetcher tokenizes documents in the background, at most Workers at once.
type prefetcher struct {
	enc      *encoder
	sem      chan struct{}  // a slot per goroutine tokenizing
	inflight map[int]*ahead // corpus index -> its tokenization
}

func newPrefetcher(enc *encoder, workers int) *prefetcher {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &prefetcher{enc: enc, sem: make(chan struct{}, workers), inflight: map[int]*ahead{}}
}

// start begins tokenizing document i unless it is already under way.
func (f *prefetcher) start(i int, d *DocRef) {
	if _, ok := f.inflight[i]; ok {
		return
	}
	a := &ahead{done: make(chan struct{})}
	f.inflight[i] = a
	go func() {
		f.sem <- struct{}{}
		defer func() { <-f.sem }()
		a.toks, a.loss, a.err = f.enc.document(d)
		close(a.done)
	}()
}

// take returns document i's tokens, waiting for them if they are under way
// and tokenizing them here if they were never started.
func (f *prefetcher) take(i int, d *DocRef) ([]int32, []bool, error) {
	a, ok := f.inflight[i]
	if !ok {
		return f.enc.document(d)
	}
	delete(f.inflight, i)
	<-a.done
	return a.toks, a.loss, a.err
}

// forget drops what was started (after a seek: the lanes read elsewhere now);
// the goroutines still running finish on their own.
func (f *prefetcher) forget() { clear(f.inflight) }

// prefetch starts the Prefetch documents lane ln reads after the one at p.
func (l *Loader) prefetch(p LaneCursor) {
	for range l.cfg.Prefetch {
		p = l.advance(p)
		i := l.order(p.Epoch)[p.Doc]
		l.pre.start(i, &l.corpus.docs[i])
	}
}
