package tokenizer

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
)

// wordCache remembers the ids of words the model has merged, as Hugging Face's
// BPE cache does: most words of a text have been seen before, and a lookup costs
// less than the merges' map probes. It is sharded so that goroutines encoding in
// parallel seldom wait on one another, and stops growing at wordCacheSize words.
type wordCache struct {
	seed   maphash.Seed
	size   atomic.Int64
	shards [64]struct {
		sync.RWMutex
		m map[string][]int32
	}
}

const (
	wordCacheSize = 1 << 17
	wordCacheLen  = 64 // longer words are not cached: rare, and costly to keep
)

func newWordCache() *wordCache {
	c := &wordCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string][]int32{}
	}
	return c
}

func (c *wordCache) get(word string) ([]int32, bool) {
	if len(word) > wordCacheLen {
		return nil, false
	}
	s := &c.shards[maphash.String(c.seed, word)%uint64(len(c.shards))]
	s.RLock()
	ids, ok := s.m[word]
	s.RUnlock()
	return ids, ok
}

func (c *wordCache) put(word string, ids []int32) {
	if len(word) > wordCacheLen || c.size.Load() >= wordCacheSize {
		return
	}
	s := &c.shards[maphash.String(c.seed, word)%uint64(len(c.shards))]
	s.Lock()
	if _, ok := s.m[word]; !ok {
		// Copies: word points into the caller's text, which must not stay alive.
		s.m[strings.Clone(word)] = append([]int32(nil), ids...)
		c.size.Add(1)
	}
	s.Unlock()
}
