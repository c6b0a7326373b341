package trainer

import (
	"errors"
	"fmt"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
)

// Config is everything a Trainer needs, typed. The command line builds it from a
// recipe (internal/cli); the trainer does not read recipes itself.
type Config struct {
	Seed    uint64
	Backend string // auto | cpu | cuda (device.Open)

	// The model: loaded from From (a Hugging Face folder) when set, else Model
	// initialised with standard deviation InitStd.
	Model model.Config
	From  string
	DType dtypes.DType
	// Compute, when set (bfloat16), is mixed precision: the pieces' matmuls and
	// attention run in Compute while the weights, gradients and AdamW state stay
	// in DType (float32 master weights), and norms, softmax statistics and the
	// loss in float32. Zero: everything in DType.
	Compute dtypes.DType
	// DeviceResident runs the step as on a GPU (embedding, gradient sums,
	// clipping and AdamW as compiled graphs, nothing through the host) even on
	// the CPU backend: what tests use to check that path. Always on for cuda.
	DeviceResident bool
	// GPUIndex is NVML's index of the GPU this worker computes on (its first
	// visible one), for the device figures of the metrics.
	GPUIndex int
	InitStd  float64
	// RopeScaling, when set, replaces the rope_scaling of From's config.json
	// (the recipe's model.rope_scaling stretching a trained model's context).
	RopeScaling *model.RopeScaling

	Sources    []data.SourceConfig
	Tokenizer  string // byte, or a tokenizer.json or a model folder holding one (data.NewTokenizer)
	TokenCache string // the token cache's folder (data.TokenCache); "": none
	SeqLen     int
	Shuffle    bool
	Interleave int
	WholeDocs  bool // data.pack: whole (data.LoaderConfig.Whole)
	Heldout    int  // documents set aside for evaluation (data.OpenSplit with Seed); 0: none
	// LossChunk > 0: the head's loss and gradient LossChunk tokens at a time
	// (Engine.LossChunk); 0: all of a worker's tokens at once.
	LossChunk int
	// Zero 1 splits the AdamW moments over every worker (ZeRO stage 1,
	// zero.go); 0 keeps them whole on each.
	Zero int
	// EvalEvery > 0 computes the loss on the first EvalBatches sequences of
	// the held-out documents every EvalEvery steps (and at the last step).
	EvalEvery, EvalBatches int

	AttnBlockQ, AttnBlockK int
	// ShiftGroups > 0 trains with shifted sparse attention (LongLoRA's S2-Attn)
	// over groups of that many positions (even): see model.BlockAttention.
	ShiftGroups   int
	KeepAttention bool // recompute: except_attention
	// Blockwise keeps torus's blockwise attention kernels on a CUDA GPU too,
	// where cuDNN's fused attention would otherwise run wherever the mask is
	// plain causal (model.FusedAttention).
	Blockwise bool
	// Offload is where stored activations wait for backward: "none" or "host"
	// (memory: on the CPU backend host memory is where they are) or "disk"
	// (spill files in OffloadDir, one folder per worker).
	Offload    string
	OffloadDir string
	// MemoryLimit is a soft limit on the process's memory (Go's
	// debug.SetMemoryLimit): the garbage collector works harder as the heap
	// nears it instead of letting garbage grow to the live size again. 0: none.
	MemoryLimit int64

	// LoRA, when enabled, freezes the base weights and trains adapters (and
	// the base weights it names) only.
	LoRA model.LoRA
	// KeepFrozenStored keeps a LoRA run's frozen base weights in the dtype
	// model.From stores them in when that is bfloat16 or float16 (half the
	// memory of float32), widened a layer at a time as the step uses them:
	// the same values, so the same results (recipe lora.base_dtype: stored).
	KeepFrozenStored bool

	AdamW       optim.AdamWConfig
	Schedule    optim.Schedule
	MaxGradNorm float64
	// A step whose loss or gradient norm is not finite applies nothing: it
	// stops the run (a *NonFiniteError) or, with SkipNonFinite, is dropped
	// and counted, stopping after more than NonFiniteLimit in a row.
	SkipNonFinite   bool
	NonFiniteLimit  int
	DecayNorms      bool
	DecayEmbeddings bool
	GradAccum       int

	// Checkpoints into RUN/ckpt every CheckpointEvery steps and at the end (0:
	// never), kept as checkpoint.Policy says.
	CheckpointEvery int
	Keep            checkpoint.Policy

	// RecipeYAML is the resolved recipe, written into the run directory as is;
	// RecipeHash its sha256 (recorded in checkpoints).
	RecipeYAML []byte
	RecipeHash string
}

// Validate reports every problem the trainer can see before it starts.
func (c Config) Validate() error {
	var errs []error
	if c.DType != dtypes.Float32 && c.DType != dtypes.Float64 {
		errs = append(errs, fmt.Errorf("trainer: dtype %s not supported (float32 or float64)", c.DType))
	}
	if c.Compute != 0 && c.Compute != c.DType {
		switch {
		case c.Compute != dtypes.BFloat16:
			errs = append(errs, fmt.Errorf("trainer: compute dtype %s not supported (bfloat16, or the model's dtype)", c.Compute))
		case c.DType != dtypes.Float32:
			errs = append(errs, fmt.Errorf("trainer: bfloat16 compute needs float32 master weights, got %s", c.DType))
		}
		if c.ShiftGroups > 0 {
			errs = append(errs, errors.New("trainer: shifted sparse attention with bfloat16 compute is not supported yet (model.dtype: float32)"))
		}
	}
	if c.From == "" {
		errs = append(errs, c.Model.Validate())
	}
	if c.SeqLen < 2 {
		errs = append(errs, fmt.Errorf("trainer: seq_len must be >= 2, got %d", c.SeqLen))
	}
	if c.AttnBlockQ < 1 || c.AttnBlockK < 1 {
		errs = append(errs, fmt.Errorf("trainer: attention blocks must be >= 1, got %d x %d", c.AttnBlockQ, c.AttnBlockK))
	}
	if g := c.ShiftGroups; g != 0 && (g < 2 || g%2 != 0) {
		errs = append(errs, fmt.Errorf("trainer: shift groups must be 0 (full attention) or even and >= 2, got %d", g))
	}
	switch c.Offload {
	case "", "none", "host":
	case "disk":
		if c.OffloadDir == "" {
			errs = append(errs, errors.New("trainer: offload disk needs a spill folder (OffloadDir)"))
		}
	default:
		errs = append(errs, fmt.Errorf("trainer: offload %q (none, host or disk)", c.Offload))
	}
	if c.GradAccum < 1 {
		errs = append(errs, fmt.Errorf("trainer: grad_accum must be >= 1, got %d", c.GradAccum))
	}
	errs = append(errs, c.AdamW.Validate(), c.Schedule.Validate())
	return errors.Join(errs...)
}
