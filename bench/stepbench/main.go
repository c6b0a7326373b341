// Command stepbench times torus's training step on a preset model (the reference
// model by default; --preset llama1b is the GPU benchmark's) with synthetic
// tokens, in a process of its own so its peak RSS (and, on a GPU, its device
// memory) is the step's. It prints one JSON line; bench/run.sh puts it beside
// PyTorch's on the CPU, bench/gpu/run.sh on a GPU.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
	"github.com/torusml/torus/trainer"
)

func main() {
	var (
		seqLen  = flag.Int("seq-len", 1024, "tokens per sequence")
		steps   = flag.Int("steps", 5, "timed steps (median reported)")
		warmup  = flag.Int("warmup", 1, "untimed steps first (compilation)")
		blockQ  = flag.Int("block-q", 512, "attention query block")
		blockK  = flag.Int("block-k", 512, "attention key block")
		layers  = flag.Int("layers", 4, "decoder layers (default: the preset's; 4 for the reference model)")
		profile = flag.String("cpuprofile", "", "write a CPU profile of the timed steps")
		mode    = flag.String("mode", "step", "step | matmul-peak | parallel (1 worker on 2 cores vs 2 on one core each) | tls (2 workers, one core each: --steps rounds of a plaintext and a TLS step) | worker | ckpt (steps with a checkpoint each vs none; write throughput)")
		ckptDir = flag.String("ckpt-dir", "", "ckpt mode: where checkpoints go (default: a temporary folder here, on this disk)")
		rank    = flag.Int("rank", 0, "worker mode: this worker's rank")
		result  = flag.String("result", "", "worker mode: where to write this worker's JSON result")
		wprocs  = flag.Int("worker-procs", 2, "parallel mode: GOMAXPROCS of each (single-core) worker")
		single  = flag.Bool("single", true, "parallel mode: also time 1 worker on both cores, for the ratio")
		cores   = flag.String("cores", "0,1", "parallel mode: the core each rank is pinned to")
		recomp  = flag.String("recompute", "layer", "memory.recompute: layer | except_attention")
		balance = flag.String("balance", "adaptive", "parallel mode: parallel.balance of the 2 workers: adaptive | off")
		memLim  = flag.Int("memory-limit-mib", 0, "memory.limit_mib: soft memory limit of each process (0: none)")
		impl    = flag.String("impl", "torus", "step mode: the impl field of the JSON line (torus-offload for the offload comparison)")
		offload = flag.String("offload", "none", "memory.offload: none | host | disk (spill files in a folder under the current directory)")
		backend = flag.String("backend", "cpu", "cpu (also go) | cuda | auto: what the trainer computes on (device.Open)")
		preset  = flag.String("preset", "reference", "model: reference (dim 256, 8 heads, vocab 256) | llama1b (dim 2048, 16 layers, 32 heads, 8 kv, mlp 5632, vocab 32000) | tiny (dim 64, 2 layers, vocab 256)")
		dtype   = flag.String("dtype", "float32", "float32 | bfloat16 (mixed precision: bf16 compute over float32 weights, gradients and AdamW state)")
		accum   = flag.Int("grad-accum", 1, "sequences (micro-batches) per optimizer step")
		attn    = flag.String("attention", "auto", "attention.kernel: auto (cuDNN's fused kernel on cuda in bfloat16, the mask being plain causal) | blockwise")
		devRes  = flag.Bool("device-resident", false, "run the step as on a GPU (compiled embedding, gradient sums, clipping, AdamW) on the CPU backend too; always so on cuda")
		tokName = flag.String("tokenizer", "byte", "data.tokenizer: byte (random bytes as data) | a tokenizer.json or model folder (then the data is $GOROOT/src's Go files, tokenized as the step runs, and the vocabulary the tokenizer's)")
		tlsFlag = flag.String("tls", "off", "worker mode: the ring's streams: off (plaintext) | on (mutual TLS, the CA of $TORUS_CLUSTER_KEY) | alternate (both, by step: see --mode tls)")
		budget  = flag.Float64("budget-s", 0, "step mode: time fewer steps (at least one) when the next would end more than this many seconds after the start (0: no limit)")
	)
	flag.Parse()
	offloadMode, implName, memoryLimitMiB = *offload, *impl, *memLim
	bench = benchOpts{backend: *backend, preset: *preset, dtype: *dtype, gradAccum: *accum, blockwise: *attn == "blockwise", deviceResident: *devRes, tokenizer: *tokName}
	budgetSeconds = *budget
	tlsMode = *tlsFlag
	m, err := presetModel(*preset)
	if err == nil {
		_, err = computeDType(*dtype)
	}
	if err == nil && *attn != "auto" && *attn != "blockwise" {
		err = fmt.Errorf("--attention %q: want auto or blockwise", *attn)
	}
	if err == nil && *accum < 1 {
		err = fmt.Errorf("--grad-accum %d: want >= 1", *accum)
	}
	if err == nil && tlsMode != "off" && tlsMode != "on" && tlsMode != "alternate" {
		err = fmt.Errorf("--tls %q: want off, on or alternate", tlsMode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepbench:", err)
		os.Exit(2)
	}
	layersSet := false
	flag.Visit(func(f *flag.Flag) { layersSet = layersSet || f.Name == "layers" })
	if !layersSet { // the preset's depth, unless --layers says otherwise
		*layers = m.Layers
	}
	switch *mode {
	case "parallel":
		err = runParallel(*wprocs, *cores, *single, *recomp, *balance, *seqLen, *steps, *warmup, *blockQ, *blockK, *layers)
	case "tls":
		err = runTLS(*wprocs, *cores, *recomp, *balance, *seqLen, *steps, *warmup, *blockQ, *blockK, *layers)
	case "ckpt":
		err = runCkpt(*recomp, *seqLen, 6, *steps, *blockQ, *blockK, *layers, *ckptDir)
	case "tokenizer":
		err = runTokenizer(*tokName)
	case "worker":
		err = runWorker(*rank, *result, *recomp, *balance, *seqLen, *steps, *warmup, *blockQ, *blockK, *layers)
	default:
		err = run(*mode, *recomp, *seqLen, *steps, *warmup, *blockQ, *blockK, *layers, *profile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stepbench:", err)
		os.Exit(1)
	}
}

func run(mode, recompute string, seqLen, steps, warmup, blockQ, blockK, layers int, profile string) error {
	if mode == "matmul-peak" {
		gflops, err := matmulPeak()
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"impl": "torus", "backend": bench.backend, "matmul_gflops": gflops})
	}
	cfg, cleanup, err := benchConfig(recompute, seqLen, steps, warmup, blockQ, blockK, layers)
	if err != nil {
		return err
	}
	defer cleanup()
	t0 := time.Now()
	t, err := trainer.New(cfg, nil)
	if err != nil {
		return err
	}
	defer t.Close()
	setup := time.Since(t0).Seconds() // backend, initial weights, compiled pieces, data
	be := t.Backend()
	fmt.Fprintf(os.Stderr, "stepbench: %s; %s model (%d parameters), %s, seq_len %d, grad_accum %d; set up in %.1f s\n",
		be.Describe(), bench.preset, t.Params.NumParams(), bench.dtype, seqLen, bench.gradAccum, setup)
	gpu := watchGPU(be.Kind) // nil off a GPU
	defer gpu.stop()
	var mem trainer.Memory
	var losses []float64 // every step's, the warm-up's first
	var dataWaits []float64
	step := func() (float64, error) {
		st, err := t.Step(context.Background())
		mem = st.Memory
		if err == nil {
			losses = append(losses, st.Loss)
			dataWaits = append(dataWaits, st.DataWaitSeconds)
		}
		gpu.sample()
		return st.StepSeconds, err
	}
	var warmupSecs []float64
	for i := range warmup { // compilation: untimed
		s, err := step()
		if err != nil {
			return err
		}
		warmupSecs = append(warmupSecs, s)
		fmt.Fprintf(os.Stderr, "stepbench: warm-up step %d: %.3f s, loss %.4f\n", i+1, s, losses[len(losses)-1])
	}
	if profile != "" {
		stop, err := startProfile(profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	model.PieceTimes() // reset: count the timed steps only
	var times []float64
	stoppedEarly := false
	for i := range steps {
		if i > 0 && budgetSeconds > 0 && time.Since(processStart).Seconds()+1.2*slices.Max(times) > budgetSeconds {
			fmt.Fprintf(os.Stderr, "stepbench: %d of %d steps timed: another would end past --budget-s %g\n", i, steps, budgetSeconds)
			stoppedEarly = true
			break
		}
		s, err := step()
		if err != nil {
			return err
		}
		times = append(times, s)
		fmt.Fprintf(os.Stderr, "stepbench: step %d: %.3f s, loss %.4f\n", warmup+i+1, s, losses[len(losses)-1])
	}
	med, timed := median(times), len(times)
	var inPieces float64
	pieces := map[string]float64{} // seconds per timed step
	kernel := "blockwise"
	for _, pt := range model.PieceTimes() {
		inPieces += pt.Total.Seconds()
		pieces[pt.Name] = pt.Total.Seconds() / float64(timed)
		if strings.HasPrefix(pt.Name, "AttnFused") && pt.Calls > 0 {
			kernel = "fused (cuDNN)"
		}
		fmt.Fprintf(os.Stderr, "stepbench: %-18s %5d calls %8.3f s/step\n", pt.Name, pt.Calls/timed, pt.Total.Seconds()/float64(timed))
	}
	fmt.Fprintf(os.Stderr, "stepbench: outside pieces %.3f s/step of %.3f\n", med-inPieces/float64(timed), med)
	gpu.stop() // the peak is the process's up to here: the measurement below allocates its own
	flops := model.StepFLOPs(cfg.Model, seqLen) * float64(bench.gradAccum)
	peak, peakFrom, gpuName := peakFLOPs(be, bench.dtype)
	out := map[string]any{
		"impl": implName, "seq_len": seqLen, "recompute": recompute, "layers": layers, "block_q": blockQ, "block_k": blockK,
		"backend": be.Describe(), "backend_kind": be.Kind, "preset": bench.preset, "dtype": bench.dtype, "grad_accum": bench.gradAccum,
		"model": modelJSON(cfg.Model), "params": t.Params.NumParams(),
		"setup_seconds": setup, "warmup": warmup, "warmup_seconds": warmupSecs, "step_seconds_median": med, "step_seconds_all": times,
		"steps_timed": timed, "stopped_early": stoppedEarly, "attention": kernel, "piece_seconds_per_step": pieces,
		"device_resident": cfg.DeviceResident || be.Kind != "cpu",
		"tokens_per_s":    float64(seqLen*bench.gradAccum) / med, "losses": losses,
		"peak_rss_bytes": trainer.PeakRSS(), "flops_per_step": flops, "tflops": flops / med / 1e12,
		"status": "ok", "offload": cfg.Offload, "memory": mem,
		"mfu": nil, "peak_flops": nil, "peak_from": peakFrom,
		"device_memory_peak_bytes": nil,
		"tokenizer":                bench.tokenizer, "data_wait_seconds_median": median(dataWaits[warmup:]),
		"data_wait_fraction": median(dataWaits[warmup:]) / med,
	}
	if peak > 0 {
		out["mfu"], out["peak_flops"] = flops/med/peak, peak
	}
	if gpuName != "" {
		out["gpu"] = gpuName
	}
	if p, own, ok := gpu.peak(); ok {
		out["device_memory_peak_bytes"], out["device_memory_own"] = p, own
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// benchOpts are the flags that shape every config benchConfig makes.
type benchOpts struct {
	backend        string // --backend
	preset         string // --preset
	dtype          string // --dtype
	gradAccum      int    // --grad-accum
	blockwise      bool   // --attention blockwise
	deviceResident bool   // --device-resident
	tokenizer      string // --tokenizer
}

var bench = benchOpts{backend: "cpu", preset: "reference", dtype: "float32", gradAccum: 1, tokenizer: "byte"}

// attention is --attention's value.
func (o benchOpts) attention() string {
	if o.blockwise {
		return "blockwise"
	}
	return "auto"
}

// presetModel is a --preset's architecture (its Layers the preset's depth).
func presetModel(name string) (model.Config, error) {
	switch name {
	case "reference": // bench/run.sh's CPU comparison
		return model.Config{Vocab: 256, Dim: 256, Layers: 4, Heads: 8, KVHeads: 4, MLPDim: 688, RopeTheta: 10000, NormEps: 1e-5}, nil
	case "llama1b": // the GPU benchmark's (bench/gpu/torch_llama.py's defaults)
		return model.Config{Vocab: 32000, Dim: 2048, Layers: 16, Heads: 32, KVHeads: 8, MLPDim: 5632, RopeTheta: 10000, NormEps: 1e-5}, nil
	case "tiny": // smoke tests of the benchmark scripts
		return model.Config{Vocab: 256, Dim: 64, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 128, RopeTheta: 10000, NormEps: 1e-5}, nil
	}
	return model.Config{}, fmt.Errorf("--preset %q: want reference, llama1b or tiny", name)
}

// computeDType is --dtype's trainer.Config.Compute: zero for float32 (all in
// float32), bfloat16 for mixed precision over float32 master weights.
func computeDType(name string) (dtypes.DType, error) {
	switch name {
	case "float32":
		return 0, nil
	case "bfloat16":
		return dtypes.BFloat16, nil
	}
	return 0, fmt.Errorf("--dtype %q: want float32 or bfloat16", name)
}

// benchConfig is the preset model on a file of random bytes (the step sees
// real data loading and packing), fresh, with the recipe defaults for the rest.
func benchConfig(recompute string, seqLen, steps, warmup, blockQ, blockK, layers int) (trainer.Config, func(), error) {
	m, err := presetModel(bench.preset)
	if err != nil {
		return trainer.Config{}, nil, err
	}
	m.Layers = layers
	compute, err := computeDType(bench.dtype)
	if err != nil {
		return trainer.Config{}, nil, err
	}
	dir, err := os.MkdirTemp("", "stepbench")
	if err != nil {
		return trainer.Config{}, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	// Random bytes as one long document: the step sees real data loading and
	// packing, and every sequence is one document's (no boundary inside, the
	// attention a 1B model's long-context step does). Byte ids are valid tokens
	// of any vocabulary of at least 256, and speed does not depend on them.
	rng := rand.New(rand.NewPCG(1, 2))
	text := make([]byte, seqLen*bench.gradAccum*(steps+warmup+2))
	for i := range text {
		text[i] = byte(rng.IntN(256))
	}
	path := filepath.Join(dir, "random.txt")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		cleanup()
		return trainer.Config{}, nil, err
	}
	src, tokName := []data.SourceConfig{{Type: "text_file", Path: path}}, "byte"
	if bench.tokenizer != "" && bench.tokenizer != "byte" { // real text through a real tokenizer, tokenized as the steps run
		tok, err := data.NewTokenizer(bench.tokenizer)
		if err != nil {
			cleanup()
			return trainer.Config{}, nil, err
		}
		m.Vocab = max(m.Vocab, tok.VocabSize())
		src, tokName = []data.SourceConfig{{Type: "text_dir", Path: "$GOROOT/src", Include: []string{"*.go"}, Exclude: []string{"testdata"}}}, bench.tokenizer
	}
	// The preset model, fresh, with the recipe defaults for everything else.
	cfg := trainer.Config{
		Seed:           1,
		Backend:        bench.backend,
		Model:          m,
		DType:          dtypes.Float32, // master weights, gradients and AdamW state
		Compute:        compute,
		InitStd:        0.02,
		Sources:        src,
		Tokenizer:      tokName,
		SeqLen:         seqLen,
		Interleave:     1,
		AttnBlockQ:     blockQ,
		AttnBlockK:     blockK,
		KeepAttention:  recompute == "except_attention",
		LossChunk:      2048, // the recipe's default memory.loss_chunk
		AdamW:          optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1},
		Schedule:       optim.Schedule{LR: 3e-4, Steps: steps + warmup, Decay: "cosine", MinLRRatio: 0.1},
		MaxGradNorm:    1,
		GradAccum:      bench.gradAccum,
		Blockwise:      bench.blockwise,
		DeviceResident: bench.deviceResident,
		Offload:        offloadMode,
		MemoryLimit:    int64(memoryLimitMiB) << 20,
	}
	if offloadMode == "disk" { // on this disk, not /tmp (which may be memory)
		spill, err := os.MkdirTemp(".", "stepbench-offload-")
		if err != nil {
			cleanup()
			return trainer.Config{}, nil, err
		}
		cfg.OffloadDir = spill
		cleanup = func() { os.RemoveAll(dir); os.RemoveAll(spill) }
	}
	return cfg, cleanup, nil
}

// offloadMode is --offload, for every config benchConfig makes; implName is --impl.
var offloadMode, implName, memoryLimitMiB = "none", "torus", 0

// budgetSeconds is --budget-s, counted from processStart.
var (
	budgetSeconds float64
	processStart  = time.Now()
)

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianIndex is the index in x of its (upper) median element, -1 if x is empty.
func medianIndex(x []float64) int {
	if len(x) == 0 {
		return -1
	}
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(x[a], x[b]) })
	return idx[len(idx)/2]
}

// startProfile starts a CPU profile into path; call stop to end it.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
