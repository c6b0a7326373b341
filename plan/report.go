package plan

import (
	"fmt"
	"math"
)

// Component is one part of a worker's peak memory.
type Component struct {
	Name  string `json:"name"`
	Bytes int64  `json:"bytes"`
	Note  string `json:"note"`
}

// Report is the plan of one worker.
type Report struct {
	Config     Config   `json:"config"`
	Params     int64    `json:"params"`     // parameters of the model
	Techniques []string `json:"techniques"` // what the plan assumes beyond torus today (empty: torus as it is)

	// Components of one worker's peak memory on its device (the process's RSS
	// on the CPU), in print order; they sum to Total.
	Components []Component `json:"components"`
	Total      int64       `json:"total_bytes"`
	// TotalHigh is the CPU peak when the Go collector's timing is unlucky:
	// it sizes the heap from what it marked live, which can hold more than
	// the instantaneous peak (see Calibration.HighReach). Total on the GPU.
	TotalHigh int64 `json:"total_high_bytes"`
	// Live is what the Go heap holds at the peak (CPU): Total less the GC headroom and the non-heap part.
	Live int64 `json:"live_bytes"`

	Weights        int64  `json:"weights_bytes"`
	Grads          int64  `json:"grads_bytes"`
	Optimizer      int64  `json:"optimizer_bytes"`
	Stored         int64  `json:"stored_bytes"`           // stored activations resident at the peak
	StoredPerLayer int64  `json:"stored_per_layer_bytes"` // what one layer stores per micro-batch
	Transient      int64  `json:"transient_bytes"`        // the largest transient, with what is alive around it
	TransientPiece string `json:"transient_piece"`        // which piece it is
	Baseline       int64  `json:"baseline_bytes"`         // runtime baseline (CPU: Go runtime, compiled pieces; GPU: CUDA context)
	GCHeadroom     int64  `json:"gc_headroom_bytes"`      // CPU: how far the Go heap grows past what is live

	Host       int64 `json:"host_bytes"`  // per worker, in host memory beside a GPU: offloaded activations, optimizer state
	SpillBytes int64 `json:"spill_bytes"` // offload disk: bytes written and read back per step

	FLOPs       float64 `json:"flops"`           // executed per step per worker, recompute included
	AttnFLOPs   float64 `json:"attention_flops"` // the part in blockwise attention
	StepSeconds float64 `json:"step_seconds"`    // FLOPs / (matmul rate per worker x efficiency)
	RateGFLOPS  float64 `json:"rate_gflops"`     // the matmul rate per worker used
	Efficiency  float64 `json:"efficiency"`      // the efficiency of the whole step: FLOPs / (rate x StepSeconds)
}

// Need is the memory that must hold the job where it runs: the worker's
// total times the workers sharing one machine on the CPU, one device's on the GPU.
func (r Report) Need() int64 {
	if r.Config.Device == CPU {
		return r.Total * int64(r.Config.WorkersPerMachine)
	}
	return r.Total
}

// NeedHigh is Need with TotalHigh: the CPU peak when the collector's timing is unlucky.
func (r Report) NeedHigh() int64 {
	if r.Config.Device == CPU {
		return r.TotalHigh * int64(r.Config.WorkersPerMachine)
	}
	return r.TotalHigh
}

// Fits reports whether the job fits memBytes (per machine on the CPU, per
// device on the GPU; see Need).
func (r Report) Fits(memBytes int64) bool { return r.Need() <= memBytes }

// LimitFor is the memory.limit_mib that holds each worker within memBytes
// (per machine, shared by its workers) on the CPU, and whether one is
// sensible: what is live must stay well below it (at most 80%), or the
// collector would run all the time.
func (r Report) LimitFor(memBytes int64) (mib int64, ok bool) {
	c := r.Config
	if c.Device != CPU {
		return 0, false
	}
	per := memBytes / int64(max(c.WorkersPerMachine, 1))
	mib = per >> 20
	return mib, float64(r.Live) <= 0.8*float64(mib<<20-Measured.NonHeapBytes)
}

// Count formats a parameter count: 3.03M, 6.74B.
func Count(n int64) string {
	if n >= 1e9 {
		return fmt.Sprintf("%.3gB", float64(n)/1e9)
	}
	return fmt.Sprintf("%.3gM", float64(n)/1e6)
}

// Bytes formats a byte count in binary units.
func Bytes(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if math.Abs(f) < 1024 || u == "TiB" {
			if u == "B" {
				return fmt.Sprintf("%d B", n)
			}
			return fmt.Sprintf("%.1f %s", f, u)
		}
		f /= 1024
	}
	return ""
}
