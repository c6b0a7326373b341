package data

import (
	"errors"
	"fmt"
)

// LaneCursor is a position in one lane's document stream: the epoch, the
// index into that epoch's order of documents, and the token offset in that
// document. Lane j of K reads the indices j, j+K, j+2K, ... of each epoch's
// order, so Doc mod K is j.
type LaneCursor struct {
	Epoch  int `json:"epoch"`
	Doc    int `json:"doc"`
	Offset int `json:"offset"`
}

// Cursor is a position in a Loader's sequence stream: what a checkpoint
// stores (as JSON) to resume the data exactly.
//
// Epoch, Doc and Offset are where the next sequence starts, as in a
// LaneCursor. With one lane that is the whole state, and Next and Lanes are
// zero, so the JSON is {"epoch":..,"doc":..,"offset":..}. With K > 1 lanes,
// Next is the lane of the next sequence, Lanes[j] is where lane j's next
// sequence starts, and Epoch, Doc and Offset repeat Lanes[Next].
//
// A Cursor holds a slice: compare two with reflect.DeepEqual, not ==.
type Cursor struct {
	Epoch  int          `json:"epoch"`
	Doc    int          `json:"doc"`
	Offset int          `json:"offset"`
	Next   int          `json:"next,omitempty"`  // K > 1: the lane of the next sequence, in [0, K)
	Lanes  []LaneCursor `json:"lanes,omitempty"` // K > 1: [K] where each lane's next sequence starts; one lane: nil
}

// at is where the next sequence starts.
func (c Cursor) at() LaneCursor { return LaneCursor{Epoch: c.Epoch, Doc: c.Doc, Offset: c.Offset} }

// Cursor is where the next call to Next starts.
func (l *Loader) Cursor() Cursor {
	p := l.lanes[l.next].pos
	c := Cursor{Epoch: p.Epoch, Doc: p.Doc, Offset: p.Offset}
	if len(l.lanes) > 1 {
		c.Next = l.next
		c.Lanes = make([]LaneCursor, len(l.lanes))
		for j, ln := range l.lanes {
			c.Lanes[j] = ln.pos
		}
	}
	return c
}

// Seek moves the loader to c, typically a Cursor saved earlier by a loader of
// the same corpus, tokenizer and config; the batches that follow are those
// that loader produced after it. A cursor for another number of lanes, a
// position that is not its lane's, and an offset past its document's end are
// errors, so Seek may read one document per lane. On error the loader is
// where it was.
func (l *Loader) Seek(c Cursor) error {
	K := len(l.lanes)
	pos := c.Lanes
	if len(pos) == 0 { // a single-lane cursor
		pos = []LaneCursor{c.at()}
	}
	switch {
	case len(pos) != K:
		return fmt.Errorf("data: seek: the cursor has %d lanes, the loader %d (lanes %d in the config, %d documents)",
			len(pos), K, l.cfg.Lanes, l.corpus.Len())
	case c.Next < 0 || c.Next >= K:
		return fmt.Errorf("data: seek: next lane %d out of range [0, %d)", c.Next, K)
	case pos[c.Next] != c.at():
		return fmt.Errorf("data: seek: %+v is not where lane %d (next) is: %+v", c.at(), c.Next, pos[c.Next])
	}
	clear(l.orders) // those of the new positions are cached as they are checked
	for j, p := range pos {
		if err := l.check(j, p); err != nil {
			clear(l.orders)
			if K > 1 {
				return fmt.Errorf("data: seek: lane %d at %+v: %w", j, p, err)
			}
			return fmt.Errorf("data: seek %+v: %w", p, err)
		}
	}
	for j, p := range pos {
		l.lanes[j].pos = p
	}
	l.next = c.Next
	if l.pre != nil {
		l.pre.forget()
	}
	return nil
}

// check reports a position that lane j of this loader never reaches. It
// reads the document when the offset is not 0.
func (l *Loader) check(j int, p LaneCursor) error {
	n, K := l.corpus.Len(), len(l.lanes)
	switch {
	case p.Epoch < 0:
		return errors.New("negative epoch")
	case p.Doc < 0 || p.Doc >= n:
		return fmt.Errorf("doc out of range [0, %d)", n)
	case p.Doc%K != j:
		return fmt.Errorf("doc %d is not lane %d's (lane %d of %d reads docs %d, %d, ...)", p.Doc, j, j, K, j, j+K)
	case p.Offset < 0:
		return errors.New("negative offset")
	case p.Offset == 0:
		return nil
	}
	toks, _, err := l.tokens(&l.lanes[j], p)
	if err != nil {
		return err
	}
	if p.Offset >= len(toks) {
		return fmt.Errorf("offset past the end of %s (%d tokens)", l.doc(p).Name, len(toks))
	}
	return nil
}
