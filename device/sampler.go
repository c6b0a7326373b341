package device

import (
	"fmt"
	"os"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Sample is one reading of a Sampler.
type Sample struct {
	// MemoryUsed is the device memory this process holds (with XLA's allocator:
	// what it has reserved, not only what live tensors use). Where NVML does not
	// list the process (Own false) it is the whole GPU's used memory.
	MemoryUsed uint64
	MemoryPeak uint64 // the most MemoryUsed this sampler has seen
	Own        bool   // MemoryUsed is this process's own figure, not the GPU's
	// Utilization is the GPU's busy percent over its last sample period, every
	// process's kernels together; -1 where the GPU does not report it.
	Utilization int
}

// Sampler reads one GPU's memory and load for this process, meant to be called
// once per training step (each call is two or three NVML queries, well under a
// millisecond). Its methods are safe for concurrent use.
type Sampler struct {
	Index int // NVML's index of the GPU
	GPU   GPU // the GPU as it was when the sampler was made

	dev nvml.Device
	pid int

	mu   sync.Mutex
	peak uint64
}

// NewSampler samples GPU index (NVML's; see VisibleGPU) for this process.
func NewSampler(index int) (*Sampler, error) {
	lib, err := nvmlLib()
	if err != nil {
		return nil, err
	}
	return newSampler(lib, index, os.Getpid())
}

func newSampler(lib nvml.Interface, index, pid int) (*Sampler, error) {
	gpus, err := listGPUs(lib)
	if err != nil {
		return nil, err
	}
	if index < 0 || index >= len(gpus) {
		return nil, fmt.Errorf("nvml: no GPU %d (NVML sees %d)", index, len(gpus))
	}
	d, err := handle(lib, index)
	if err != nil {
		return nil, err
	}
	return &Sampler{Index: index, GPU: gpus[index], dev: d, pid: pid}, nil
}

// Sample reads the GPU now. The peak is the most seen by this sampler, so it
// misses what came and went between two calls.
func (s *Sampler) Sample() (Sample, error) {
	out := Sample{Own: true, Utilization: utilization(s.dev)}
	used, err := processMemory(s.dev, s.Index, s.pid)
	if err != nil {
		// Not listed (another PID namespace, or nothing allocated yet), or the
		// list is not reported: the GPU's whole used memory, which is this
		// process's and the driver's where one worker has the GPU.
		m, ret := s.dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return Sample{}, fmt.Errorf("nvml: GPU %d: memory: %s", s.Index, nvml.ErrorString(ret))
		}
		used, out.Own = m.Used, false
	}
	s.mu.Lock()
	s.peak = max(s.peak, used)
	out.MemoryUsed, out.MemoryPeak = used, s.peak
	s.mu.Unlock()
	return out, nil
}
