package trainer

import (
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"
)

// ActivationStore keeps what the forward pass saves of each layer (its input,
// and with recompute: except_attention also the attention output and lse) until
// backward needs it. Put is called for layers in increasing order, Get in
// decreasing order; Get releases what it returns. Implementations: keep
// (memory); host and disk offload arrive with the memory work.
type ActivationStore interface {
	Put(layer int, ts []*tensors.Tensor) error
	Get(layer int) ([]*tensors.Tensor, error)
	// Bytes is the size of what is stored now.
	Bytes() int64
}

// KeepStore holds the saved tensors in memory.
type KeepStore struct{ saved map[int][]*tensors.Tensor }

// NewKeepStore makes an empty in-memory store.
func NewKeepStore() *KeepStore { return &KeepStore{saved: map[int][]*tensors.Tensor{}} }

func (s *KeepStore) Put(layer int, ts []*tensors.Tensor) error {
	s.saved[layer] = ts
	return nil
}

func (s *KeepStore) Get(layer int) ([]*tensors.Tensor, error) {
	ts, ok := s.saved[layer]
	if !ok {
		return nil, fmt.Errorf("nothing stored for layer %d", layer)
	}
	delete(s.saved, layer)
	return ts, nil
}

func (s *KeepStore) Bytes() int64 {
	var n int64
	for _, ts := range s.saved {
		for _, t := range ts {
			n += t.ByteSize()
		}
	}
	return n
}
