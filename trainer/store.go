package trainer

import (
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"
)

// ActivationStore keeps each layer's input from the forward pass until backward
// needs it. Put is called for layers in increasing order, Get in decreasing order;
// Get may release what it returns. Implementations: keep (memory); host and disk
// offload arrive with the memory work.
type ActivationStore interface {
	Put(layer int, h *tensors.Tensor) error
	Get(layer int) (*tensors.Tensor, error)
	// Bytes is the size of what is stored now.
	Bytes() int64
}

// KeepStore holds layer inputs in memory.
type KeepStore struct{ h map[int]*tensors.Tensor }

// NewKeepStore makes an empty in-memory store.
func NewKeepStore() *KeepStore { return &KeepStore{h: map[int]*tensors.Tensor{}} }

func (s *KeepStore) Put(layer int, h *tensors.Tensor) error {
	s.h[layer] = h
	return nil
}

func (s *KeepStore) Get(layer int) (*tensors.Tensor, error) {
	h, ok := s.h[layer]
	if !ok {
		return nil, fmt.Errorf("no stored input for layer %d", layer)
	}
	delete(s.h, layer)
	return h, nil
}

func (s *KeepStore) Bytes() int64 {
	var n int64
	for _, h := range s.h {
		n += h.ByteSize()
	}
	return n
}
