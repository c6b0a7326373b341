// Command stepbench times torus's training step on the reference model with
// synthetic tokens, in a process of its own so its peak RSS is the step's.
// It prints one JSON line; bench/run.sh puts it beside PyTorch's.
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
		layers  = flag.Int("layers", 4, "decoder layers")
		profile = flag.String("cpuprofile", "", "write a CPU profile of the timed steps")
		mode    = flag.String("mode", "step", "step | matmul-peak | parallel (1 worker on 2 cores vs 2 on one core each) | worker | ckpt (steps with a checkpoint each vs none; write throughput)")
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
	)
	flag.Parse()
	offloadMode, implName, memoryLimitMiB = *offload, *impl, *memLim
	var err error
	switch *mode {
	case "parallel":
		err = runParallel(*wprocs, *cores, *single, *recomp, *balance, *seqLen, *steps, *warmup, *blockQ, *blockK, *layers)
	case "ckpt":
		err = runCkpt(*recomp, *seqLen, 6, *steps, *blockQ, *blockK, *layers, *ckptDir)
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
		return json.NewEncoder(os.Stdout).Encode(map[string]any{"impl": "torus", "matmul_gflops": gflops})
	}
	cfg, cleanup, err := benchConfig(recompute, seqLen, steps, warmup, blockQ, blockK, layers)
	if err != nil {
		return err
	}
	defer cleanup()
	t, err := trainer.New(cfg, nil)
	if err != nil {
		return err
	}
	defer t.Close()
	var mem trainer.Memory
	step := func() (float64, error) {
		st, err := t.Step(context.Background())
		mem = st.Memory
		return st.StepSeconds, err
	}
	for range warmup {
		if _, err := step(); err != nil {
			return err
		}
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
	for range steps {
		s, err := step()
		if err != nil {
			return err
		}
		times = append(times, s)
	}
	med := median(times)
	var inPieces float64
	for _, pt := range model.PieceTimes() {
		inPieces += pt.Total.Seconds()
		fmt.Fprintf(os.Stderr, "stepbench: %-18s %5d calls %8.3f s/step\n", pt.Name, pt.Calls/steps, pt.Total.Seconds()/float64(steps))
	}
	fmt.Fprintf(os.Stderr, "stepbench: outside pieces %.3f s/step of %.3f\n", med-inPieces/float64(steps), med)
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"impl": implName, "seq_len": seqLen, "recompute": recompute, "layers": layers, "block_q": blockQ, "block_k": blockK,
		"step_seconds_median": med, "step_seconds_all": times, "tokens_per_s": float64(seqLen) / med,
		"peak_rss_bytes": trainer.PeakRSS(), "flops_per_step": model.StepFLOPs(cfg.Model, seqLen), "status": "ok",
		"offload": cfg.Offload, "memory": mem,
	})
}

// benchConfig is the reference model on a file of random bytes (the step sees
// real data loading and packing), fresh, with the recipe defaults for the rest.
func benchConfig(recompute string, seqLen, steps, warmup, blockQ, blockK, layers int) (trainer.Config, func(), error) {
	dir, err := os.MkdirTemp("", "stepbench")
	if err != nil {
		return trainer.Config{}, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	// Random bytes as one long document: the step sees real data loading and packing.
	rng := rand.New(rand.NewPCG(1, 2))
	text := make([]byte, seqLen*(steps+warmup+2))
	for i := range text {
		text[i] = byte(rng.IntN(256))
	}
	path := filepath.Join(dir, "random.txt")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		cleanup()
		return trainer.Config{}, nil, err
	}
	// The reference model, fresh, with the recipe defaults for everything else.
	cfg := trainer.Config{
		Seed:    1,
		Backend: "go",
		Model: model.Config{Vocab: 256, Dim: 256, Layers: layers, Heads: 8, KVHeads: 4, MLPDim: 688,
			RopeTheta: 10000, NormEps: 1e-5},
		DType:         dtypes.Float32,
		InitStd:       0.02,
		Sources:       []data.SourceConfig{{Type: "text_file", Path: path}},
		Tokenizer:     "byte",
		SeqLen:        seqLen,
		Interleave:    1,
		AttnBlockQ:    blockQ,
		AttnBlockK:    blockK,
		KeepAttention: recompute == "except_attention",
		AdamW:         optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1},
		Schedule:      optim.Schedule{LR: 3e-4, Steps: steps + warmup, Decay: "cosine", MinLRRatio: 0.1},
		MaxGradNorm:   1,
		GradAccum:     1,
		Offload:       offloadMode,
		MemoryLimit:   int64(memoryLimitMiB) << 20,
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
