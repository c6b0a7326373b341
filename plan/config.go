package plan

import (
	"errors"
	"fmt"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/parallel"
)

// Device is where a worker's tensors live.
type Device string

const (
	CPU Device = "cpu" // the pure-Go backend: every tensor is in the process's (Go) heap
	GPU Device = "gpu" // one accelerator per worker, with host memory beside it
)

// Precision is how parameters, gradients and activations are stored.
type Precision string

const (
	FP32 Precision = "float32" // torus today: everything float32
	FP64 Precision = "float64" // torus today, for tests: everything float64
	// BF16Mixed is what published long-sequence runs use and torus does not
	// have: bf16 weights, gradients and activations, float32 master weights and
	// AdamW moments (2+2+4+4+4 = 16 bytes per parameter when nothing is sharded).
	BF16Mixed Precision = "bf16-mixed"
)

// Config is one worker's view of a run: the recipe's shapes and memory
// settings, the machine, and the techniques assumed beyond what torus has.
type Config struct {
	Model     model.Config
	Precision Precision

	SeqLen    int    // tokens per sequence
	SP, DP    int    // sequence-parallel and data-parallel degrees: workers = SP*DP
	Strategy  string // ring | ulysses
	GradAccum int    // micro-batches per optimizer step, per data-parallel group

	Recompute              string // layer | except_attention
	Offload                string // none | host | disk
	AttnBlockQ, AttnBlockK int
	// LossChunk is memory.loss_chunk: the head's loss and gradient are
	// computed this many tokens at a time (trainer.Engine.LossChunk), so its
	// logits are [min(LossChunk, tokens per worker), vocab]; 0: all at once.
	LossChunk int

	Device Device
	// Concurrency is how many query blocks of attention run at once on a
	// worker (model.BlockAttention.Parallel: GOMAXPROCS on the CPU).
	Concurrency int
	// WorkersPerMachine is how many workers share one machine's memory and
	// compute (all of them under `torus train`; 1 per GPU).
	WorkersPerMachine int

	// GCFactor is how far the Go heap may grow past what is live before the
	// garbage collector runs: 1 + GOGC/100 (2 by default). CPU only.
	GCFactor float64
	// DataBytes is what the data loader holds: the documents its lanes have
	// read, as tokens (see internal/cli's estimate from the corpus). CPU only.
	DataBytes int64
	// MemoryLimit is Go's soft memory limit on each worker (memory.limit_mib,
	// or GOMEMLIMIT), bytes; 0: none. Near it the collector runs more often
	// instead of letting the heap grow to GCFactor x what is live. CPU only.
	MemoryLimit int64

	// MatmulGFLOPS is the machine's (CPU) or one device's (GPU) dense matmul
	// rate in this precision; Efficiency the fraction of it a step achieves
	// (0: the calibration's, Measured.Efficiency or GPUEfficiency).
	MatmulGFLOPS float64
	Efficiency   float64

	// Techniques torus does not have yet. Published long-sequence runs use
	// them; a plan names each one it assumes.
	ShardOptimizer  bool // ZeRO-2: gradients, master weights and moments split over the workers
	OptimizerOnHost bool // ZeRO-Offload: master weights and moments in host memory, the update on the host
	// TileTokens > 0: the MLP computed in sequence tiles of this many tokens
	// (ALST's TiledMLP); 0: over the whole shard at once, as torus does. (The
	// loss is torus's own: LossChunk. dK, dV accumulated per key block,
	// FlashAttention-2's backward, is torus's own too, since issue 18.)
	TileTokens int
}

// Workers is the number of workers of the job.
func (c Config) Workers() int { return c.SP * c.DP }

// Topology is the plan's layout, checked and built as a job's is (with sp
// given: a plan has no default for it).
func (c Config) Topology() parallel.Topology {
	return parallel.Topology{Workers: c.Workers(), DP: c.DP, SP: c.SP, Strategy: c.Strategy, SeqLen: c.SeqLen, Heads: c.Model.Heads, KVHeads: c.Model.KVHeads}
}

// Validate names every setting the plan cannot work with.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("plan: "+format, args...)) }
	if err := c.Model.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.Precision {
	case FP32, FP64, BF16Mixed:
	default:
		bad("precision %q (float32, float64 or bf16-mixed)", c.Precision)
	}
	if c.SeqLen < 2 {
		bad("seq_len must be >= 2, got %d", c.SeqLen)
	}
	if c.SP < 1 || c.DP < 1 {
		bad("sp (%d) and dp (%d) must be >= 1", c.SP, c.DP)
	} else if _, err := c.Topology().Mesh(); err != nil {
		errs = append(errs, fmt.Errorf("plan: %w", err))
	}
	if c.GradAccum < 1 {
		bad("grad_accum must be >= 1, got %d", c.GradAccum)
	}
	switch c.Recompute {
	case "layer", "except_attention":
	default:
		bad("recompute %q (layer or except_attention)", c.Recompute)
	}
	switch c.Offload {
	case "none", "host", "disk":
	default:
		bad("offload %q (none, host or disk)", c.Offload)
	}
	if c.AttnBlockQ < 1 || c.AttnBlockK < 1 {
		bad("attention blocks must be >= 1, got %d x %d", c.AttnBlockQ, c.AttnBlockK)
	}
	switch c.Device {
	case CPU:
		if c.Precision == BF16Mixed {
			bad("bf16-mixed is a GPU plan: the CPU backend trains in float32 or float64")
		}
		if c.GCFactor < 1 {
			bad("gc factor must be >= 1 (1 + GOGC/100), got %g", c.GCFactor)
		}
		if c.MemoryLimit < 0 {
			bad("memory limit must be >= 0, got %d", c.MemoryLimit)
		}
	case GPU:
	default:
		bad("device %q (cpu or gpu)", c.Device)
	}
	if c.Concurrency < 1 {
		bad("concurrency must be >= 1, got %d", c.Concurrency)
	}
	if c.WorkersPerMachine < 1 {
		bad("workers per machine must be >= 1, got %d", c.WorkersPerMachine)
	}
	if c.MatmulGFLOPS < 0 || c.Efficiency < 0 || c.Efficiency > 1 {
		bad("matmul rate %g GFLOP/s and efficiency %g: want rate >= 0 and efficiency in [0, 1]", c.MatmulGFLOPS, c.Efficiency)
	}
	if c.TileTokens < 0 {
		bad("tile tokens must be >= 0, got %d", c.TileTokens)
	}
	if c.LossChunk < 0 {
		bad("loss_chunk must be >= 0, got %d", c.LossChunk)
	}
	return errors.Join(errs...)
}

// AsToday returns c with every technique torus does not have turned off and
// the precision torus trains in (float32 unless float64 was asked for).
func (c Config) AsToday() Config {
	if c.Precision == BF16Mixed {
		c.Precision = FP32
	}
	c.ShardOptimizer, c.OptimizerOnHost, c.TileTokens = false, false, 0
	return c
}

// WithBF16ZeRO returns c in bf16 mixed precision with gradients, master
// weights and moments sharded over the workers (ZeRO-2): the setting the
// published runs' frameworks (Megatron-LM, DeepSpeed) train in.
func (c Config) WithBF16ZeRO() Config {
	c.Precision, c.ShardOptimizer = BF16Mixed, true
	return c
}

// Techniques lists, in words, what c assumes beyond torus today.
func (c Config) Techniques() []string {
	var t []string
	if c.Precision == BF16Mixed {
		t = append(t, "bf16 mixed precision")
	}
	if c.ShardOptimizer && c.Workers() > 1 {
		t = append(t, fmt.Sprintf("optimizer state and gradients sharded over %d workers (ZeRO-2)", c.Workers()))
	}
	if c.OptimizerOnHost {
		t = append(t, "optimizer state in host memory (ZeRO-Offload)")
	}
	if c.TileTokens > 0 {
		t = append(t, fmt.Sprintf("MLP in tiles of %d tokens", c.TileTokens))
	}
	return t
}
