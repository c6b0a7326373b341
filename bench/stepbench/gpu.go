package main

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/torusml/torus/device"
)

// gpuWatch samples, through NVML, the device memory this process holds: after
// every step and ten times a second in between, so a peak inside a step is
// seen too. nil (off a GPU, or without NVML) does nothing.
type gpuWatch struct {
	s    *device.Sampler
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once

	mu       sync.Mutex
	peakSeen uint64 // the most device memory a sample has seen
	own      bool   // the last sample's figure is this process's (NVML lists it), not the whole GPU's
	seen     bool   // a sample succeeded
}

// watchGPU starts watching the GPU this process computes on (device 0 of
// CUDA_VISIBLE_DEVICES) when kind is "cuda"; else, or where NVML cannot, nil.
func watchGPU(kind string) *gpuWatch {
	if kind != "cuda" {
		return nil
	}
	idx, err := device.VisibleGPU(0, os.Getenv("CUDA_VISIBLE_DEVICES"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "stepbench: no device memory figures: %v\n", err)
		return nil
	}
	s, err := device.NewSampler(idx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stepbench: no device memory figures: %v\n", err)
		return nil
	}
	w := &gpuWatch{s: s, done: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	return w
}

func (w *gpuWatch) sample() {
	if w == nil {
		return
	}
	sm, err := w.s.Sample()
	if err != nil {
		return
	}
	w.mu.Lock()
	w.seen, w.own, w.peakSeen = true, sm.Own, max(w.peakSeen, sm.MemoryPeak)
	w.mu.Unlock()
}

// stop ends the sampling (a last sample first); it may be called more than once.
func (w *gpuWatch) stop() {
	if w == nil {
		return
	}
	w.once.Do(func() {
		w.sample()
		close(w.done)
		w.wg.Wait()
	})
}

// peak is the most device memory seen, whether it was this process's own
// figure (else the whole GPU's used memory), and false when nothing was seen.
func (w *gpuWatch) peak() (bytes int64, own, ok bool) {
	if w == nil {
		return 0, false, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(w.peakSeen), w.own, w.seen
}
