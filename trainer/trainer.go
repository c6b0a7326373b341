package trainer

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
	"github.com/torusml/torus/parallel"
)

// StepStats is what one optimizer step did: one line of metrics.jsonl.
type StepStats struct {
	Step         int     `json:"step"` // 1-based: the number of steps taken (skipped ones included)
	Loss         float64 `json:"loss"` // mean cross-entropy per target token, nats
	LR           float64 `json:"lr"`
	GradNorm     float64 `json:"grad_norm"` // before clipping
	Tokens       int     `json:"tokens"`    // target tokens in this step
	TokensPerS   float64 `json:"tokens_per_s"`
	StepSeconds  float64 `json:"step_seconds"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	// In a parallel job (this worker's figures):
	CommWaitSeconds float64 `json:"comm_wait_seconds,omitempty"` // blocked on communication
	BytesSent       int64   `json:"bytes_sent,omitempty"`        // sent to other workers
	// DataWaitSeconds is the time the step waited for its batches: reading
	// and tokenizing what was not ready ahead.
	DataWaitSeconds float64 `json:"data_wait_seconds"`
	// Checkpoint is the checkpoint this step started writing (in the background), if any.
	Checkpoint string `json:"checkpoint,omitempty"`
	Memory     Memory `json:"memory"`
	// Skipped: the step's loss or gradient norm was not finite and its update
	// was dropped (optim.on_nonfinite: skip); SkippedTotal counts them so far.
	Skipped      bool `json:"skipped,omitempty"`
	SkippedTotal int  `json:"skipped_total,omitempty"`
	// EvalLoss, every log.eval_every steps, is the mean cross-entropy per
	// target token on the held-out documents (data.heldout), after this step.
	EvalLoss    *float64 `json:"eval_loss,omitempty"`
	EvalSeconds float64  `json:"eval_seconds,omitempty"`
	Device               // mfu, device memory and GPU load (devstats.go)
}

// MarshalJSON writes a skipped step's non-finite loss and gradient norm as
// null (JSON has no NaN): the metrics line is still written.
func (s StepStats) MarshalJSON() ([]byte, error) {
	type plain StepStats
	orNull := func(x float64) *float64 {
		if !finite(x) {
			return nil
		}
		return &x
	}
	return json.Marshal(struct {
		plain
		Loss     *float64 `json:"loss"`
		GradNorm *float64 `json:"grad_norm"`
	}{plain(s), orNull(s.Loss), orNull(s.GradNorm)})
}

// Memory is what this worker holds, by component, in bytes.
type Memory struct {
	Weights     int64 `json:"weights"`
	Grads       int64 `json:"grads"`
	Optim       int64 `json:"optim"`
	Activations int64 `json:"activations_peak"` // stored for backward, most at once (resident: not offloaded)
	// The piece whose one call returned the most bytes in this step, and that size.
	LargestPiece       string `json:"largest_piece"`
	LargestPieceOutput int64  `json:"largest_piece_output"`
}

// Trainer owns one worker's model, optimizer and data, and runs steps.
type Trainer struct {
	Config Config
	Engine *Engine
	Params *model.Params

	backend *device.Backend
	tok     data.Tokenizer
	loader  *data.Loader
	opt     optim.Optimizer    // what checkpoints read and restore: one of the two below
	hostOpt *optim.AdamW       // on the CPU backend: Go loops over the tensors' memory
	devOpt  *optim.DeviceAdamW // on a device: compiled, bitwise the same as hostOpt
	grads   Grads
	order   []string // parameter names in order

	badInARow, skipped int // non-finite steps: in a row now, and skipped in all
	evalSet            []data.Batch

	gathered     map[string]optim.Vec // ZeRO: the moments gathered whole for a checkpoint (rank 0)
	gatheredStep int

	// stopAsked is set (by a signal handler) to stop the run after the step in
	// progress; stopAgreed says, after a step, that some worker asked before
	// it ended: every worker reads the same value, summed with the loss.
	stopAsked  atomic.Bool
	stopAgreed bool
	step       int
	tokens     int64 // target tokens trained on
	dist       *Dist // nil: a single worker
	nreduce    int   // steps reduced so far, for tags

	devstats    *deviceStats // MFU, device memory and load for each step's metrics
	layerParams [][]string   // each layer's parameter names, and the rest: the all-reduce buckets
	otherParams []string
}

// New builds a trainer: backend, parameters (fresh or loaded), compiled pieces,
// data and optimizer.
//
// d places the trainer in a parallel job; nil means a single worker.
func New(c Config, d *Dist) (*Trainer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.MemoryLimit > 0 {
		debug.SetMemoryLimit(c.MemoryLimit)
	}
	backend, err := device.Open(c.Backend, device.Options{})
	if err != nil {
		return nil, fmt.Errorf("trainer: %w", err)
	}
	tok, err := data.NewTokenizer(c.Tokenizer)
	if err != nil {
		return nil, err
	}
	params, err := loadParams(c, tok)
	if err != nil {
		return nil, err
	}
	params.Config.Compute = c.Compute
	pieces, err := model.NewPieces(backend.Compute, params.Config)
	if err != nil {
		return nil, err
	}
	var lora *model.LoRAPieces
	if params.LoRA != nil {
		if lora, err = model.NewLoRAPieces(backend.Compute, params.Config, *params.LoRA); err != nil {
			return nil, err
		}
	}
	loader, evalSet, err := openData(c, tok)
	if err != nil {
		return nil, err
	}
	local := &model.BlockAttention{P: pieces, BlockQ: c.AttnBlockQ, BlockK: c.AttnBlockK, ShiftGroups: c.ShiftGroups}
	attn, err := d.attention(local, c)
	if err != nil {
		return nil, err
	}
	if attn == Attention(local) && fusedAttention(backend, c) {
		attn = &model.FusedAttention{P: pieces, Fallback: local}
	}
	var kernels *optim.Kernels // device-resident training: everything stays where the backend computes
	if backend.Kind != "cpu" || c.DeviceResident {
		if kernels, err = optim.NewKernels(backend.Compute); err != nil {
			return nil, err
		}
	}
	var store ActivationStore = NewKeepStore()
	if c.Offload == "disk" {
		if store, err = NewDiskStore(c.OffloadDir, params.Config.Layers); err != nil {
			return nil, err
		}
	}
	if c.Offload == "host" && (backend.Kind != "cpu" || c.DeviceResident) { // on the CPU backend device memory is host memory: keep
		store = NewHostStore(backend.Compute, params.Config.Layers)
	}
	t := &Trainer{
		Config:  c,
		Params:  params,
		evalSet: evalSet,
		Engine: &Engine{
			Device:        kernels,
			Pieces:        pieces,
			Params:        params,
			Attn:          attn,
			Store:         store,
			KeepAttention: c.KeepAttention,
			SeqLen:        c.SeqLen,
			LossChunk:     c.LossChunk,
			LoRA:          lora,
		},
		dist:        d,
		backend:     backend,
		tok:         tok,
		loader:      loader,
		grads:       NewGrads(params),
		order:       params.Trainable(),
		layerParams: layerParams(params),
		otherParams: otherParams(params),
	}
	computeDType := c.DType
	if c.Compute != 0 {
		computeDType = c.Compute
	}
	t.devstats = newDeviceStats(backend.Kind, c.GPUIndex, backend.Compute, computeDType)
	if kernels != nil {
		if c.Zero > 0 {
			return nil, fmt.Errorf("trainer: parallel.zero %d shards the host optimizer's state: not yet on a device backend (use zero 0)", c.Zero)
		}
		t.devOpt = optim.NewDeviceAdamW(kernels, c.AdamW)
		t.opt = t.devOpt
	} else {
		t.hostOpt = optim.NewAdamW(c.AdamW)
		t.opt = t.hostOpt
	}
	return t, nil
}

func loadParams(c Config, tok data.Tokenizer) (*model.Params, error) {
	var p *model.Params
	var err error
	if c.From != "" {
		// A folder with adapters (a LoRA run's checkpoint) is its merged model.
		var keep func(string) bool
		if c.LoRA.Enabled() && c.KeepFrozenStored {
			keep = c.LoRA.KeepsStored // the frozen base in the files' bfloat16: half the memory
		}
		if p, err = model.LoadInferenceKeeping(c.From, c.DType, keep); err != nil {
			return nil, fmt.Errorf("trainer: model.from: %w", err)
		}
		if c.RopeScaling != nil {
			p.Config.RopeScaling = *c.RopeScaling
			if err := p.Config.Validate(); err != nil {
				return nil, fmt.Errorf("trainer: model.rope_scaling over model.from %s: %w", c.From, err)
			}
		}
	} else if p, err = model.Init(c.Model, c.DType, c.InitStd, c.Seed); err != nil {
		return nil, err
	}
	if c.LoRA.Enabled() {
		if err := model.AddLoRA(p, c.LoRA, c.Seed); err != nil {
			return nil, fmt.Errorf("trainer: lora: %w", err)
		}
	}
	if tok.VocabSize() > p.Config.Vocab {
		return nil, fmt.Errorf("trainer: tokenizer %s has %d tokens but the model's vocabulary is %d", tok.Name(), tok.VocabSize(), p.Config.Vocab)
	}
	return p, nil
}

// openData opens the training documents through the token cache. A real
// tokenizer's are tokenized ahead of the step, a few per lane on every core;
// bytes are not worth it (the ids would only take 4x the text's memory early).
// With EvalEvery, it also reads the evaluation set: the first EvalBatches
// sequences of the held-out documents, in corpus order (fewer when one pass
// over them gives fewer), the same at every evaluation.
func openData(c Config, tok data.Tokenizer) (*data.Loader, []data.Batch, error) {
	corpus, held, err := data.OpenSplit(c.Sources, c.Heldout, c.Seed) // the held-out documents are eval's
	if err != nil {
		return nil, nil, err
	}
	prefetch := prefetchDocs
	if _, bytes := tok.(data.ByteTokenizer); bytes {
		prefetch = 0
	}
	loader, err := data.NewLoader(corpus, tok, data.LoaderConfig{
		SeqLen: c.SeqLen, Shuffle: c.Shuffle, Seed: c.Seed, Lanes: c.Interleave, Whole: c.WholeDocs,
		Prefetch: prefetch, TokenCache: c.TokenCache,
	})
	if err != nil || c.EvalEvery == 0 {
		return loader, nil, err
	}
	if held.Len() == 0 {
		return nil, nil, fmt.Errorf("trainer: log.eval_every %d needs held-out documents (data.heldout >= 1)", c.EvalEvery)
	}
	ev, err := data.NewLoader(held, tok, data.LoaderConfig{SeqLen: c.SeqLen, Whole: c.WholeDocs, TokenCache: c.TokenCache})
	if err != nil {
		return nil, nil, fmt.Errorf("trainer: held-out documents: %w", err)
	}
	var set []data.Batch
	for len(set) < max(c.EvalBatches, 1) && (len(set) == 0 || ev.Cursor().Epoch == 0) {
		b, err := ev.Next()
		if err != nil {
			return nil, nil, fmt.Errorf("trainer: held-out documents: %w", err)
		}
		set = append(set, b)
	}
	return loader, set, nil
}

// prefetchDocs is how many documents each lane tokenizes ahead.
const prefetchDocs = 2

// StepNum is the number of optimizer steps taken.
func (t *Trainer) StepNum() int { return t.step }

// Cursor is where in the data the next step starts.
func (t *Trainer) Cursor() data.Cursor { return t.loader.Cursor() }

// Step runs one optimizer step. Every exchange between workers in it is named
// here, in order; alone, nothing is exchanged.
func (t *Trainer) Step(ctx context.Context) (StepStats, error) {
	start := time.Now()
	wait0, sent0 := t.commCounters()
	// Target counts: not exchanged. Every worker reads every micro-batch of the
	// step, so each knows the step's target count, the loss's divisor.
	micro, targets, err := t.microBatches()
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: %w", t.step+1, err)
	}
	dataWait := time.Since(start).Seconds()
	// Attention: inside each layer, K/V blocks go round the ring (or Ulysses'
	// all-to-all) in the forward; in backward again to recompute the layer's
	// attention (memory.recompute: layer), and once more with their gradients.
	// Gradients: each layer's bucket is all-reduced as its backward ends in
	// this worker's last micro-batch, while the layers below go back.
	red := t.newReducer(ctx)
	loss, err := t.accumulate(ctx, micro, targets, red)
	if err == nil {
		// The loss: summed with the last bucket (embedding, final norm, head);
		// then every bucket is waited for.
		loss, err = red.rest(loss)
	}
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: %w", t.step+1, err)
	}
	// The optimizer: not exchanged. Every worker holds the same summed
	// gradients and the same weights, and applies the same update.
	// A non-finite loss or norm (the same on every worker) applies nothing.
	lr := t.Config.Schedule.At(t.step)
	norm, applied, err := t.update(ctx, lr, loss)
	if err != nil {
		return StepStats{}, fmt.Errorf("step %d: optimizer: %w", t.step+1, err)
	}
	if applied {
		t.badInARow = 0
	} else if err := t.nonFinite(loss, norm); err != nil {
		return StepStats{}, err
	}
	t.step++
	t.tokens += int64(targets)
	s := t.stats(time.Since(start).Seconds(), wait0, sent0, loss, lr, norm, targets)
	s.DataWaitSeconds, s.Skipped, s.SkippedTotal = dataWait, !applied, t.skipped
	if e := t.Config.EvalEvery; e > 0 && (t.step%e == 0 || t.step == t.Config.Schedule.Steps) {
		start := time.Now()
		l, err := t.EvalLoss(ctx)
		if err != nil {
			return StepStats{}, fmt.Errorf("step %d: eval: %w", t.step, err)
		}
		s.EvalLoss, s.EvalSeconds = &l, time.Since(start).Seconds()
	}
	return s, nil
}

// EvalLoss is the mean cross-entropy per target token on the evaluation set
// (see openData) with the weights as they are: the forward alone, each
// sequence cut across the sequence-parallel workers and the sequences dealt
// to the data-parallel groups as a step's micro-batches are, the sums added
// over every worker.
func (t *Trainer) EvalLoss(ctx context.Context) (float64, error) {
	if len(t.evalSet) == 0 {
		return 0, fmt.Errorf("no evaluation set (log.eval_every and data.heldout)")
	}
	sum, targets := 0.0, 0
	for i, b := range t.evalSet {
		targets += b.NumTargets()
		if !t.mine(i) {
			continue
		}
		sb, err := t.shard(b)
		if err != nil {
			return 0, err
		}
		l, err := t.Engine.Loss(ctx, sb, 1)
		if err != nil {
			return 0, err
		}
		sum += l
	}
	if t.dist != nil && t.dist.Mesh.World > 1 {
		s := host.FromFloat64(dtypes.Float64, []float64{sum}, 1)
		if err := parallel.AllReduceSum(ctx, t.dist.T, t.allRanks(), fmt.Sprintf("eval/%d", t.step), []*tensors.Tensor{s}); err != nil {
			return 0, fmt.Errorf("all-reduce: %w", err)
		}
		sum = host.ToFloat64(s)[0]
	}
	return sum / float64(max(targets, 1)), nil
}

// nonFinite counts a step that applied nothing, and returns the error that
// stops the run unless the recipe skips such steps (up to its limit in a row).
func (t *Trainer) nonFinite(loss, norm float64) error {
	t.badInARow++
	e := &NonFiniteError{Step: t.step + 1, Loss: loss, GradNorm: norm, Param: t.firstBadGradient(), InARow: t.badInARow, Skipped: t.skipped}
	if !t.Config.SkipNonFinite || t.badInARow > t.Config.NonFiniteLimit {
		return e
	}
	t.skipped++
	return nil
}

// stats is the metrics line of the step just taken.
func (t *Trainer) stats(secs, wait0 float64, sent0 int64, loss, lr, norm float64, targets int) StepStats {
	wait1, sent1 := t.commCounters()
	piece, pieceBytes := model.LargestOutput()
	mem := Memory{
		Weights: tensorBytes(slices.Collect(maps.Values(t.Params.T))), Grads: tensorBytes(slices.Collect(maps.Values(t.grads))),
		Optim: t.opt.StateBytes(), Activations: t.Engine.ActivationPeak(),
		LargestPiece: piece, LargestPieceOutput: pieceBytes,
	}
	s := StepStats{
		Step: t.step, Loss: loss, LR: lr, GradNorm: norm, Tokens: targets,
		TokensPerS: float64(t.Config.GradAccum*t.dp()*t.Config.SeqLen) / secs, StepSeconds: secs, PeakRSSBytes: PeakRSS(),
		CommWaitSeconds: wait1 - wait0, BytesSent: sent1 - sent0, Memory: mem,
	}
	t.devstats.fill(&s, t.Params.Config, t.Config.SeqLen, t.Config.GradAccum*t.dp(), t.world(), secs)
	return s
}

// Gradients computes the loss and the gradients of one step into Grads, with
// the same exchanges as Step, without updating anything: the loss is divided by
// the step's total target count over every micro-batch of every data-parallel
// group, so the result is exactly that of one big batch.
func (t *Trainer) Gradients(ctx context.Context) (loss float64, targets int, err error) {
	micro, targets, err := t.microBatches()
	if err != nil {
		return 0, 0, err
	}
	red := t.newReducer(ctx)
	if loss, err = t.accumulate(ctx, micro, targets, red); err != nil {
		return 0, 0, err
	}
	if loss, err = red.rest(loss); err != nil {
		return 0, 0, err
	}
	return loss, targets, nil
}

// microBatches reads the step's GradAccum micro-batches per data-parallel group
// and returns this worker's, cut to its shard, with the target count of all of
// them. Every worker reads them all: the loader is deterministic.
func (t *Trainer) microBatches() (mine []data.Batch, targets int, err error) {
	n := t.Config.GradAccum * t.dp()
	for i := range n {
		b, err := t.loader.Next()
		if err != nil {
			return nil, 0, fmt.Errorf("data: %w", err)
		}
		targets += b.NumTargets()
		if !t.mine(i) {
			continue // another data-parallel group's micro-batch
		}
		if b, err = t.shard(b); err != nil {
			return nil, 0, err
		}
		mine = append(mine, b)
	}
	if targets == 0 {
		return nil, 0, fmt.Errorf("no target tokens in %d sequences (documents of one token?)", n)
	}
	return mine, targets, nil
}

// accumulate runs forward and backward over micro, adding the gradients into
// Grads, and returns this worker's share of the loss. Each layer's gradients
// are final once the last micro-batch's backward has passed the layer: they go
// to red then, so their reduce overlaps the layers still to go back through.
func (t *Trainer) accumulate(ctx context.Context, micro []data.Batch, targets int, red *reducer) (loss float64, err error) {
	if t.Engine.Device != nil {
		t.grads.Reset()
	} else {
		t.grads.Zero()
	}
	for i, b := range micro {
		var l float64
		for layer, err := range t.Engine.Backward(ctx, b, 1/float64(targets), t.grads, &l) {
			if err != nil {
				red.abandon()
				return 0, err
			}
			if i == len(micro)-1 {
				red.layer(layer)
			}
		}
		loss += l
	}
	for name, g := range t.grads {
		if g == nil { // a parameter no micro-batch of this worker reached
			p := t.Params.Get(name)
			t.grads[name] = host.NewZeros(p.DType(), p.Shape().Dimensions...)
		}
	}
	return loss, nil
}

// tokenizerFiles are the files of the run's tokenizer that its checkpoints and
// final model carry (a Hugging Face tokenizer's; none for bytes).
func (t *Trainer) tokenizerFiles() map[string][]byte {
	if f, ok := t.tok.(data.FileTokenizer); ok {
		return f.Files()
	}
	return nil
}

// Close removes what the trainer keeps on disk (offload spill files).
func (t *Trainer) Close() error {
	if c, ok := t.Engine.Store.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Grads are the gradients of the last Gradients or Step call, by parameter name.
func (t *Trainer) Grads() Grads { return t.grads }

// fusedAttention says whether a worker alone (no ring) takes cuDNN's fused
// attention: on a CUDA GPU, in bfloat16 (cuDNN's operands), without shifted
// sparse attention, unless the recipe keeps the blockwise kernels.
func fusedAttention(b *device.Backend, c Config) bool {
	return b.Kind == "cuda" && c.Compute == dtypes.BFloat16 && c.ShiftGroups == 0 && !c.Blockwise
}

// world is the number of workers of the job (1 alone).
func (t *Trainer) world() int {
	if t.dist == nil {
		return 1
	}
	return t.dist.Mesh.World
}

// DescribeDevice says what MFU is measured against ("mfu against 989 TFLOP/s (NVIDIA H200, ...)").
func (t *Trainer) DescribeDevice() string { return t.devstats.describe() }

// Backend is what the trainer computes on ("backend cuda (auto): NVIDIA H200 ...").
func (t *Trainer) Backend() *device.Backend { return t.backend }
