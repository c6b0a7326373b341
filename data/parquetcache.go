package data

import "sync"

// pqPages keeps the values of the pages read last: documents read in order
// (no shuffle, or several from one page in a row) decode each page once.
var pqPages = &pageCache{capBytes: 64 << 20}

// pageCache is a small cache of decoded pages, at most capBytes of values,
// safe for concurrent use. Two reads of a page that is not in it may both
// decode it.
type pageCache struct {
	mu       sync.Mutex
	capBytes int
	bytes    int
	order    []*pqPage // oldest first
	vals     map[*pqPage][][]byte
}

func (pc *pageCache) get(p *pqPage) ([][]byte, error) {
	pc.mu.Lock()
	vals, ok := pc.vals[p]
	pc.mu.Unlock()
	if ok {
		return vals, nil
	}
	vals, err := p.readValues()
	if err != nil {
		return nil, err
	}
	size := 0
	for _, v := range vals {
		size += len(v) + 24
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if _, ok := pc.vals[p]; ok || size > pc.capBytes/4 {
		return vals, nil
	}
	if pc.vals == nil {
		pc.vals = map[*pqPage][][]byte{}
	}
	for pc.bytes+size > pc.capBytes {
		old := pc.order[0]
		for _, v := range pc.vals[old] {
			pc.bytes -= len(v) + 24
		}
		delete(pc.vals, old)
		pc.order = pc.order[1:]
	}
	pc.vals[p], pc.order, pc.bytes = vals, append(pc.order, p), pc.bytes+size
	return vals, nil
}
