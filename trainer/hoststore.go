package trainer

import (
	"errors"
	"fmt"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/gomlx/core/tensors"
)

// HostStore is memory.offload: host. On a device backend the tensors the
// pieces return live in device memory; Put starts copying a layer's saved
// tensors into host memory and frees their device buffers once copied, while
// the next layer computes. Get returns a layer's tensors on the device and
// starts bringing the layer below back, so backward finds them there (prefetch
// in reverse layer order). The last layer is never copied out: backward needs it
// first. Put waits for the layer before to reach the host, so the device holds
// about two layers of stored activations (the one being copied out, or the one
// worked on and the one coming back), whatever the depth.
//
// Host copies are reused from step to step (fresh pages are slow here), and the
// copies back to the device are made before Get returns them: a host tensor
// that several executions upload at once races (see model.Pieces.Share).
//
// A copy that fails in the background is returned by the next Put or Get, and
// a Get of that layer returns it again; a layer never Put is an error. Put and
// Get are called from one goroutine, as ActivationStore says; Put of layer 0
// starts a new step: what an unfinished step left is freed.
type HostStore struct {
	backend compute.Backend
	layers  int

	mu     sync.Mutex
	slots  map[int]*hostSlot
	failed error                        // a failed copy no Put or Get has returned yet
	free   map[string][]*tensors.Tensor // host copies to reuse, by shape
}

// hostSlot is one layer's saved tensors: on the device (dev), in host memory
// (host), or moving between them (busy).
type hostSlot struct {
	dev, host []*tensors.Tensor
	bytes     int64
	moving    hostMove      // the copy in flight, if any
	busy      chan struct{} // closed when that copy ends; set and read by the caller's goroutine only
	err       error         // why the layer is lost
}

type hostMove int

const (
	notMoving hostMove = iota
	movingToHost
	movingToDevice
)

var _ ActivationStore = (*HostStore)(nil)

// NewHostStore makes an empty store for a model of the given number of layers,
// whose pieces compute on backend (device 0).
func NewHostStore(backend compute.Backend, layers int) *HostStore {
	return &HostStore{backend: backend, layers: layers, slots: map[int]*hostSlot{}, free: map[string][]*tensors.Tensor{}}
}

// Put takes a layer's tensors (the store owns them now) and, unless it is the
// last layer, starts copying them to host memory; then it waits for the layer
// before to be there.
func (s *HostStore) Put(layer int, ts []*tensors.Tensor) error {
	if layer == 0 {
		s.startOver()
	}
	if err := s.takeFailed(); err != nil {
		return err
	}
	if old := s.slot(layer); old != nil { // stored twice: the newer wins
		s.release(layer, old)
	}
	sl := &hostSlot{dev: ts, bytes: validBytes(ts)}
	s.mu.Lock()
	s.slots[layer] = sl
	s.mu.Unlock()
	if layer != s.layers-1 {
		s.start(layer, sl, movingToHost)
	}
	if prev := s.slot(layer - 1); prev != nil {
		s.wait(prev) // at most one layer in flight: device memory stays bounded if copies are slower than compute
		return s.takeFailed()
	}
	return nil
}

// Get returns a layer's tensors on the device (waiting for them to come back
// if they are on their way) and starts bringing back the layer below.
func (s *HostStore) Get(layer int) ([]*tensors.Tensor, error) {
	if err := s.takeFailed(); err != nil {
		return nil, err
	}
	sl := s.slot(layer)
	if sl == nil {
		return nil, fmt.Errorf("offload host: nothing stored for layer %d", layer)
	}
	s.wait(sl)
	if sl.err == nil && sl.dev == nil { // not brought back ahead: Get out of order
		s.start(layer, sl, movingToDevice)
		s.wait(sl)
	}
	s.mu.Lock()
	delete(s.slots, layer)
	if sl.err != nil && s.failed == sl.err {
		s.failed = nil // returned here
	}
	s.mu.Unlock()
	if sl.err != nil {
		s.release(layer, sl)
		return nil, sl.err
	}
	if below := s.slot(layer - 1); below != nil {
		s.wait(below) // copied out long ago: Put waited for it
		if below.err == nil && below.dev == nil {
			s.start(layer-1, below, movingToDevice)
		}
	}
	return sl.dev, nil
}

// Bytes is what the store holds on the device: layers not copied out yet (or
// being copied), and layers brought back (or on their way) that Get has not
// returned. On the cpu backend the "device" is this process's memory: Bytes
// counts the tensors the store holds in the backend's buffers, the same
// accounting as on a GPU, and HostBytes the copies it holds instead, in the
// same memory. Host offload saves nothing there, which is why the trainer uses
// it on device backends only.
func (s *HostStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sl := range s.slots {
		if sl.dev != nil || sl.moving == movingToDevice {
			n += sl.bytes
		}
	}
	return n
}

// HostBytes is what the store holds in host memory (copies made, or being made).
func (s *HostStore) HostBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, sl := range s.slots {
		if sl.host != nil || sl.moving == movingToHost {
			n += sl.bytes
		}
	}
	return n
}

// Close waits for the copies in flight, frees everything the store holds and
// returns a failed copy not yet returned, if any. The store can be used again.
func (s *HostStore) Close() error {
	s.startOver()
	s.mu.Lock()
	s.free = map[string][]*tensors.Tensor{}
	s.mu.Unlock()
	return s.takeFailed()
}

func (s *HostStore) slot(layer int) *hostSlot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.slots[layer]
}

func (s *HostStore) takeFailed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.failed
	s.failed = nil
	return err
}

// startOver frees what an unfinished step left (a failed copy stays to be returned).
func (s *HostStore) startOver() {
	s.mu.Lock()
	left := s.slots
	s.slots = map[int]*hostSlot{}
	s.mu.Unlock()
	for l, sl := range left {
		s.release(l, sl)
	}
}

// release waits for a slot's copy in flight and frees its tensors; its host
// copies go back to be reused.
func (s *HostStore) release(layer int, sl *hostSlot) {
	s.wait(sl)
	for _, t := range sl.dev {
		if err := t.FinalizeAll(); err != nil {
			s.fail(fmt.Errorf("offload host: layer %d: free: %w", layer, err))
		}
	}
	s.reuse(sl.host)
	s.mu.Lock()
	sl.dev, sl.host = nil, nil
	s.mu.Unlock()
}

func (s *HostStore) wait(sl *hostSlot) {
	if sl.busy != nil {
		<-sl.busy
		sl.busy = nil
	}
}

func (s *HostStore) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed == nil {
		s.failed = err
	}
}

// start begins copying an idle slot's tensors the given way, in the background.
func (s *HostStore) start(layer int, sl *hostSlot, d hostMove) {
	done := make(chan struct{})
	sl.busy = done
	s.mu.Lock()
	sl.moving = d
	from := sl.dev
	if d == movingToDevice {
		from = sl.host
	}
	s.mu.Unlock()
	go func() {
		defer close(done)
		var to []*tensors.Tensor
		var err error
		if d == movingToHost {
			to, err = s.copyOut(from)
		} else {
			to, err = s.bringBack(from)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		sl.moving = notMoving
		if err != nil {
			sl.err = fmt.Errorf("offload host: layer %d: %w", layer, err)
			if s.failed == nil {
				s.failed = sl.err
			}
			return
		}
		if d == movingToHost {
			sl.dev, sl.host = nil, to
		} else {
			sl.dev, sl.host = to, nil
		}
	}()
}

// copyOut copies device tensors into host tensors (reused when there are some
// of their shapes) and frees the device buffers.
func (s *HostStore) copyOut(ts []*tensors.Tensor) (hs []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil { // a backend's panic fails the step, never the process
			err = fmt.Errorf("%v", r)
		}
		if err != nil {
			s.reuse(hs)
			err = fmt.Errorf("copy to host: %w", err)
		}
	}()
	for _, t := range ts {
		if err := t.CheckValid(); err != nil {
			return hs, err
		}
		h := s.hostTensor(t)
		hs = append(hs, h)
		if err := h.CopyFrom(t); err != nil {
			return hs, err
		}
	}
	var errs []error
	for _, t := range ts { // in host memory now: give the device memory back at once
		errs = append(errs, t.FinalizeAll())
	}
	return hs, errors.Join(errs...)
}

// bringBack uploads host copies to the device; they go back to be reused.
func (s *HostStore) bringBack(hs []*tensors.Tensor) (ts []*tensors.Tensor, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
		if err != nil {
			for _, t := range ts {
				_ = t.FinalizeAll() // the copy's error is the one to report
			}
			ts, err = nil, fmt.Errorf("bring back to the device: %w", err)
		}
	}()
	for _, h := range hs {
		t, err := h.OnDeviceClone(s.backend, 0) // synchronous: h may be written again once it returns
		if err != nil {
			return ts, err
		}
		ts = append(ts, t)
	}
	s.reuse(hs)
	return ts, nil
}

func (s *HostStore) hostTensor(like *tensors.Tensor) *tensors.Tensor {
	key := like.Shape().String()
	s.mu.Lock()
	defer s.mu.Unlock()
	if free := s.free[key]; len(free) > 0 {
		s.free[key] = free[:len(free)-1]
		return free[len(free)-1]
	}
	return tensors.FromShape(like.Shape())
}

func (s *HostStore) reuse(hs []*tensors.Tensor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range hs {
		key := h.Shape().String()
		s.free[key] = append(s.free[key], h)
	}
}

// validBytes is tensorBytes, skipping what is not a tensor any more: its copy
// fails, and says why, instead of a panic here.
func validBytes(ts []*tensors.Tensor) int64 {
	var n int64
	for _, t := range ts {
		if t != nil && t.Shape().Ok() {
			n += t.ByteSize()
		}
	}
	return n
}
