package plan

// Calibration are the constants of the plan that are measured (CPU) or
// assumed (GPU) rather than counted from shapes.
type Calibration struct {
	// NonHeapBytes is the RSS of a torus process outside the Go heap (program
	// text, runtime structures, thread stacks): VmHWM minus the peak heap
	// (GODEBUG=gctrace=1) of short runs.
	NonHeapBytes int64
	// BaselineLiveBytes is the live Go heap of a training process beyond what
	// Plan counts (compiled graph pieces, gRPC, the runtime's own).
	BaselineLiveBytes int64
	// TransientReach is how much of the GOGC bound (GCFactor x live) the heap
	// reaches over the largest transient: the collector marks at moments that
	// miss the very top of a short-lived peak, whereas what lives long is
	// counted in full.
	TransientReach float64
	// PoolFalloff is how fast the MLP backward's buffers, pooled by the Go
	// backend when the attention backward starts, are dropped as the
	// attention's own allocations bring collections: the pooled share is
	// max(0, 1 - PoolFalloff x allocated / live).
	PoolFalloff float64
	// HighReach bounds the heap from above, as a fraction of GCFactor x live:
	// the most seen in the bench (the collector marked up to 1.3x the
	// instantaneous peak live: what was allocated during its mark counts).
	HighReach float64
	// Efficiency is the fraction of the calibrated float32 matmul rate the
	// projections, MLP and head of a torus step achieve, FLOPs as executed;
	// AttnEfficiency that of blockwise attention (many small executions).
	Efficiency     float64
	AttnEfficiency float64
	// GPUContextBytes is the CUDA context, library workspaces and allocator
	// slack; GPUEfficiency the fraction of the device's matmul rate a step
	// achieves. Both assumed: torus has no GPU backend.
	GPUContextBytes int64
	GPUEfficiency   float64
}

// Measured is the calibration Plan uses. The CPU values were fitted with
// `bench/plan --fit` on the calibration runs of docs/plan.md, measured on the
// project's 2-core machine; the GPU ones are assumptions, named as such (1 GiB
// of context; MEMO reports 52% MFU for its 1M-token run). The memory
// constants were refitted after issue 18 (no dK/dV partial per query block,
// the loss in chunks); the efficiencies were not, the step times of that
// bench having been taken while other work loaded the machine (load 5-10).
var Measured = Calibration{
	NonHeapBytes:      30 << 20,
	BaselineLiveBytes: 32 << 20,
	TransientReach:    0.95,
	PoolFalloff:       0,
	HighReach:         1.3,
	Efficiency:        0.436,
	AttnEfficiency:    0.672,
	GPUContextBytes:   1 << 30,
	GPUEfficiency:     0.5,
}

// Buffers the graph pieces hold alive at once, counted from the pieces
// (model/attention.go, model/layers.go) and checked against measured peaks.
const (
	scoreBuffers  = 3 // [KH, G, Bq, Bk] tensors alive in one AttnBlockGrad execution
	mlpWideBufs   = 6 // [T, mlp_dim] tensors alive in PostAttnVJP
	mlpNarrowBufs = 4 // [T, dim] tensors alive in PostAttnVJP besides its inputs and outputs
	headVocabBufs = 4 // [T, vocab] tensors alive in HeadVJP (logits, log-softmax, its exp, the scattered gradient)
	headDimBufs   = 3 // [T, dim] tensors alive in HeadVJP
)
