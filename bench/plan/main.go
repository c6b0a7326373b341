// Command plan checks `torus plan` against this machine: it trains real
// recipes with `torus train` (a few steps each, in processes of their own),
// reads every worker's peak RSS, asks `torus plan --json` for its prediction
// of the same recipe, and prints a markdown table of predicted against
// measured peak memory (and step time). The calibration runs are those
// plan.Measured was fitted on (--fit refits it from saved rows); the
// validation runs check it. About 8 minutes on a 2-core machine.
//
//	go build -o bin/torus ./cmd/torus && go run ./bench/plan --torus bin/torus --json plan.jsonl
//	go run ./bench/plan --fit plan.jsonl    # fit plan.Measured's CPU constants on the calibration rows
//	go run ./bench/plan --eval plan.jsonl   # the table again, with plan.Measured as built
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/plan"
)

// run is one recipe of the bench: the reference model of bench/stepbench
// (dim 256, 8 heads, 4 kv heads, SwiGLU 688, byte vocabulary) unless it says.
type run struct {
	name      string
	role      string // calibration | validation
	recipe    string // a recipe file instead of the reference model (seqLen etc. unused)
	sets      []string
	limitMiB  int
	seqLen    int
	workers   int
	strategy  string
	recompute string
	offload   string
	block     int
	layers    int
	vocab     int
	mlp       int
	accum     int // schedule.grad_accum (0: 1)
	steps     int
}

var runs = []run{
	// Calibration: the constants of plan.Measured are fitted on these.
	{name: "short", role: "calibration", seqLen: 1024, workers: 1, recompute: "layer", offload: "none", block: 512, steps: 12},
	{name: "medium", role: "calibration", seqLen: 4096, workers: 1, recompute: "except_attention", offload: "none", block: 512, steps: 4},
	{name: "4k-big-blocks", role: "calibration", seqLen: 4096, workers: 1, recompute: "layer", offload: "none", block: 2048, steps: 3},
	{name: "long-layer", role: "calibration", seqLen: 16384, workers: 1, recompute: "layer", offload: "none", block: 512, steps: 2},
	{name: "big-vocab", role: "calibration", seqLen: 2048, workers: 1, recompute: "layer", offload: "none", block: 512, vocab: 32768, steps: 4},
	// Validation.
	{name: "long-2workers", role: "validation", seqLen: 16384, workers: 2, recompute: "except_attention", offload: "none", block: 512, steps: 2},
	{name: "8k-small-blocks", role: "validation", seqLen: 8192, workers: 1, recompute: "except_attention", offload: "none", block: 256, steps: 3},
	{name: "8k-disk", role: "validation", seqLen: 8192, workers: 1, recompute: "except_attention", offload: "disk", block: 512, steps: 3},
	{name: "long-disk", role: "validation", seqLen: 16384, workers: 1, recompute: "except_attention", offload: "disk", block: 512, steps: 2},
	{name: "8k-ulysses", role: "validation", seqLen: 8192, workers: 2, strategy: "ulysses", recompute: "layer", offload: "none", block: 512, steps: 3},
	{name: "long-limit", role: "validation", seqLen: 16384, workers: 1, recompute: "except_attention", offload: "none", block: 512, limitMiB: 1280, steps: 2},
	{name: "example", role: "validation", recipe: "examples/recipes/byte-lm-go.yaml", sets: []string{"schedule.steps=40", "schedule.warmup_steps=1"}},
	// Validation runs added after the plan's formulas were settled (none of
	// them was looked at before): new combinations of the same knobs.
	{name: "12k-2w-disk", role: "validation", seqLen: 12288, workers: 2, recompute: "except_attention", offload: "disk", block: 512, steps: 2},
	{name: "6k-8layers", role: "validation", seqLen: 6144, workers: 1, recompute: "layer", offload: "none", block: 1024, layers: 8, steps: 3},
	{name: "wide-mlp", role: "validation", seqLen: 4096, workers: 1, recompute: "except_attention", offload: "none", block: 512, mlp: 2048, steps: 4},
	// Added for the final table, after the upper bound (Calibration.HighReach).
	{name: "10k-big-blocks", role: "validation", seqLen: 10240, workers: 1, recompute: "layer", offload: "none", block: 1024, steps: 2},
	{name: "12k-3workers", role: "validation", seqLen: 12288, workers: 3, recompute: "except_attention", offload: "none", block: 512, steps: 2},
	{name: "8k-accum-disk", role: "validation", seqLen: 8192, workers: 1, recompute: "layer", offload: "disk", block: 512, accum: 2, steps: 2},
}

func main() {
	var (
		torus   = flag.String("torus", "bin/torus", "the torus binary to measure")
		only    = flag.String("runs", "", "comma-separated run names (default: all)")
		gflops  = flag.Float64("matmul-gflops", 0, "the machine's float32 matmul rate (0: ask `torus plan` to calibrate)")
		jsonOut = flag.String("json", "", "also write the rows as JSON lines here")
		fit     = flag.Bool("fit", false, "instead of running: fit the plan's CPU calibration on the calibration rows of the JSON files given as arguments, and print the table with it")
		eval    = flag.Bool("eval", false, "instead of running: print the table of the JSON files given as arguments with the plan's calibration as built (plan.Measured)")
	)
	flag.Parse()
	var err error
	switch {
	case *fit:
		err = fitCalibration(flag.Args(), true)
	case *eval:
		err = fitCalibration(flag.Args(), false)
	default:
		err = bench(*torus, *only, *gflops, *jsonOut)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/plan:", err)
		os.Exit(1)
	}
}

// row is one line of the table.
type row struct {
	Run           string  `json:"run"`
	Role          string  `json:"role"`
	Recipe        string  `json:"recipe"`
	PredictedPeak int64   `json:"predicted_peak_bytes"`
	PredictedHigh int64   `json:"predicted_high_bytes"` // the plan's "or up to"
	MeasuredPeak  int64   `json:"measured_peak_bytes"`  // the largest over the workers
	PerWorker     []int64 `json:"measured_peak_bytes_per_worker"`
	ErrorPct      float64 `json:"error_pct"`
	Transient     string  `json:"largest_transient"`
	PredictedLive int64   `json:"predicted_live_bytes"`      // weights, gradients, optimizer, stored, data loader, transient
	PredictedTran int64   `json:"predicted_transient_bytes"` // the transient part of it
	PredictedStep float64 `json:"predicted_step_s"`
	MeasuredStep  float64 `json:"measured_step_s"` // the fastest step after the first
	Note          string  `json:"note,omitempty"`
	// What the plan was made of, for --fit; and rank 0's metrics of its last step.
	Config         plan.Config `json:"plan_config"`
	MeasuredMemory any         `json:"measured_memory"`
}

func bench(torus, only string, gflops float64, jsonOut string) error {
	torus, err := filepath.Abs(torus)
	if err != nil {
		return err
	}
	if _, err := os.Stat(torus); err != nil {
		return fmt.Errorf("%w (build it: go build -o bin/torus ./cmd/torus)", err)
	}
	dir, err := os.MkdirTemp("", "torus-planbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "random.txt")
	if err := writeRandomText(data, 16384*16); err != nil {
		return err
	}
	if gflops == 0 {
		if gflops, err = calibrate(torus); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "bench/plan: matmul %.0f GFLOP/s; %d cores\n", gflops, runtime.NumCPU())
	var rows []row
	start := time.Now()
	for _, r := range runs {
		if only != "" && !slices.Contains(strings.Split(only, ","), r.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench/plan: %s (%s) ...\n", r.name, r.describe())
		t0 := time.Now()
		row, err := measure(torus, dir, data, r, gflops)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench/plan: %s: predicted %s, measured %s (%+.1f%%) in %.0f s\n",
			r.name, plan.Bytes(row.PredictedPeak), plan.Bytes(row.MeasuredPeak), row.ErrorPct, time.Since(t0).Seconds())
		rows = append(rows, row)
	}
	fmt.Fprintf(os.Stderr, "bench/plan: %d runs in %.0f s\n", len(rows), time.Since(start).Seconds())
	printTable(rows)
	if jsonOut != "" {
		f, err := os.Create(jsonOut)
		if err != nil {
			return err
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r run) describe() string {
	if r.recipe != "" {
		return r.recipe + " as given"
	}
	s := fmt.Sprintf("%d tokens, %d worker(s)", r.seqLen, r.workers)
	if r.strategy == "ulysses" {
		s += " ulysses"
	}
	s += fmt.Sprintf(", %s, offload %s, blocks %d", r.recompute, r.offload, r.block)
	if r.layers != 0 {
		s += fmt.Sprintf(", %d layers", r.layers)
	}
	if r.mlp != 0 {
		s += fmt.Sprintf(", mlp %d", r.mlp)
	}
	if r.vocab != 0 {
		s += fmt.Sprintf(", vocab %d", r.vocab)
	}
	if r.limitMiB != 0 {
		s += fmt.Sprintf(", limit_mib %d", r.limitMiB)
	}
	if r.accum > 1 {
		s += fmt.Sprintf(", grad_accum %d", r.accum)
	}
	return s
}

// modelConfig is the run's model.
func (r run) modelConfig() model.Config {
	c := model.Config{Vocab: 256, Dim: 256, Layers: 4, Heads: 8, KVHeads: 4, MLPDim: 688, RopeTheta: 10000, NormEps: 1e-5}
	if r.layers != 0 {
		c.Layers = r.layers
	}
	if r.vocab != 0 {
		c.Vocab = r.vocab
	}
	if r.mlp != 0 {
		c.MLPDim = r.mlp
	}
	return c
}

func (r run) strategyOr() string {
	if r.strategy == "" {
		return "ring"
	}
	return r.strategy
}

// yaml is the run as a torus recipe.
func (r run) yaml(data string) string {
	m := r.modelConfig()
	return fmt.Sprintf(`name: planbench-%s
seed: 1
backend: go
model: {vocab: %d, dim: %d, layers: %d, heads: %d, kv_heads: %d, mlp_dim: %d}
data:
  sources: [{type: text_file, path: %s}]
  tokenizer: byte
  seq_len: %d
  interleave: 1
  shuffle: false
parallel: {workers: %d, strategy: %s}
memory: {recompute: %s, offload: %s, attn_block_q: %d, attn_block_k: %d, limit_mib: %d}
schedule: {steps: %d, warmup_steps: 1, grad_accum: %d}
checkpoint: {every_steps: 0}
log: {every: 1, progress: none}
`, r.name, m.Vocab, m.Dim, m.Layers, m.Heads, m.KVHeads, m.MLPDim, data, r.seqLen, r.workers, r.strategyOr(),
		r.recompute, r.offload, r.block, r.block, r.limitMiB, r.steps, max(r.accum, 1))
}

func printTable(rows []row) {
	fmt.Println("| run | role | recipe | predicted peak | or up to | measured peak (per worker) | error | within | largest transient | step s predicted / measured |")
	fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: | :---: | --- | ---: |")
	within := 0
	for _, r := range rows {
		var per []string
		for _, b := range r.PerWorker {
			per = append(per, mib(b))
		}
		note := ""
		if r.Note != "" {
			note = " (" + r.Note + ")"
		}
		piece, _, _ := strings.Cut(r.Transient, " (")
		piece, _, _ = strings.Cut(piece, ":")
		mark := "15%"
		switch {
		case math.Abs(r.ErrorPct) <= 15:
			within++
		case r.MeasuredPeak <= r.PredictedHigh:
			mark = "up to"
		default:
			mark = "no"
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %+.1f%% | %s | %s | %.2f / %.2f |\n",
			r.Run, r.Role, r.Recipe+note, mib(r.PredictedPeak), mib(r.PredictedHigh), strings.Join(per, ", "), r.ErrorPct, mark, piece, r.PredictedStep, r.MeasuredStep)
	}
	fmt.Printf("\n%d of %d runs within 15%% of the predicted peak\n", within, len(rows))
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
