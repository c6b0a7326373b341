package trainer

import (
	"fmt"
	"sync"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/model"
)

// Device is what a step made of its device: model FLOPs utilization and, on a
// GPU, memory and load as NVML reports them. Embedded in StepStats.
type Device struct {
	// MFU is the step's model FLOPs (model.StepFLOPs: forward and backward, no
	// recompute) on this worker / step seconds / the device's peak FLOP/s; 0
	// (omitted) when the peak is unknown.
	MFU float64 `json:"mfu,omitempty"`
	// On a GPU: the device memory this process holds (XLA's reserve, not only
	// live tensors), the most seen at any step so far, and the GPU's busy
	// percent over NVML's last sample period (every process's kernels).
	MemoryUsed     int64 `json:"device_memory_used_bytes,omitempty"`
	MemoryPeak     int64 `json:"device_memory_peak_bytes,omitempty"`
	GPUUtilization int   `json:"gpu_utilization,omitempty"`
}

// deviceStats fills a step's Device figures. Not safe for concurrent use: one
// trainer steps once at a time.
type deviceStats struct {
	peak     float64         // FLOP/s of this worker's device; 0: unknown
	peakFrom string          // "NVIDIA H200, bfloat16, datasheet"; "float32 matmul on backend cpu, measured"
	sampler  *device.Sampler // nil: no GPU, or NVML is not there
}

// newDeviceStats finds the peak FLOP/s of the device a trainer computes on,
// and on a GPU opens an NVML sampler:
//
//   - kind "cuda": the datasheet peak of the GPU NVML names for dtype
//     (device.PeakFLOPs); a GPU not in that table, or no NVML, is measured: a
//     float32 matmul on backend for about a second. gpuIndex is NVML's index
//     of the GPU (device.VisibleGPU(0, $CUDA_VISIBLE_DEVICES)).
//   - kind "cpu": the measured float32 matmul rate of the Go backend.
//
// A measurement is made once per process and kind, and shared by every trainer.
// What cannot be had is left out: newDeviceStats never fails.
func newDeviceStats(kind string, gpuIndex int, backend compute.Backend, dtype dtypes.DType) *deviceStats {
	d := &deviceStats{}
	if kind == "cuda" {
		if s, err := device.NewSampler(gpuIndex); err == nil {
			d.sampler = s
			if p, ok := device.PeakFLOPs(s.GPU.Name, dtype.String()); ok {
				d.peak, d.peakFrom = p, fmt.Sprintf("%s, %s, datasheet", s.GPU.Name, dtype)
				return d
			}
		}
	}
	if rate, err := measuredPeak(kind, backend); err == nil {
		d.peak, d.peakFrom = rate, fmt.Sprintf("float32 matmul on backend %s, measured", kind)
	}
	return d
}

// measured holds each kind's measured matmul rate, FLOP/s: measuring takes
// about a third of a second, and every trainer of a process shares the device.
var measured struct {
	sync.Mutex
	rate map[string]float64
}

func measuredPeak(kind string, backend compute.Backend) (float64, error) {
	measured.Lock()
	defer measured.Unlock()
	if r, ok := measured.rate[kind]; ok {
		return r, nil
	}
	gflops, err := model.MatmulGFLOPs(backend, 300*time.Millisecond)
	if err != nil {
		return 0, fmt.Errorf("trainer: measure the %s matmul rate: %w", kind, err)
	}
	if measured.rate == nil {
		measured.rate = map[string]float64{}
	}
	measured.rate[kind] = gflops * 1e9
	return gflops * 1e9, nil
}

// fill sets s.Device for a step of secs seconds in which `sequences` sequences
// of seqLen tokens were trained on by `workers` workers together (GradAccum x dp
// sequences, each split over sp workers): this worker's share of the model
// FLOPs is their 1/workers. A sample NVML cannot give leaves the GPU figures
// out: metrics do not stop training.
func (d *deviceStats) fill(s *StepStats, cfg model.Config, seqLen, sequences, workers int, secs float64) {
	if d == nil {
		return
	}
	if d.peak > 0 && secs > 0 {
		flops := model.StepFLOPs(cfg, seqLen) * float64(sequences) / float64(max(workers, 1))
		s.MFU = flops / secs / d.peak
	}
	if d.sampler == nil {
		return
	}
	sm, err := d.sampler.Sample()
	if err != nil {
		return
	}
	s.MemoryUsed, s.MemoryPeak = int64(sm.MemoryUsed), int64(sm.MemoryPeak)
	s.GPUUtilization = max(sm.Utilization, 0) // -1: not reported, as on a MIG slice
}

// describe is the peak MFU is measured against, for a run's first lines:
// "mfu against 989 TFLOP/s (NVIDIA H200, BFloat16, datasheet)".
func (d *deviceStats) describe() string {
	if d == nil || d.peak == 0 {
		return "mfu: no peak FLOP/s known for this device"
	}
	return fmt.Sprintf("mfu against %.4g TFLOP/s (%s)", d.peak/1e12, d.peakFrom)
}
