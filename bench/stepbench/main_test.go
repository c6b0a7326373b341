package main

import (
	"math"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
)

func TestPresets(t *testing.T) {
	for _, name := range []string{"reference", "llama1b", "tiny"} {
		c, err := presetModel(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, _ := presetModel("llama1b") // torch_llama.py's defaults
	want := model.Config{Vocab: 32000, Dim: 2048, Layers: 16, Heads: 32, KVHeads: 8, MLPDim: 5632, RopeTheta: 10000, NormEps: 1e-5}
	if c != want {
		t.Errorf("llama1b = %+v, want %+v", c, want)
	}
	if _, err := presetModel("huge"); err == nil {
		t.Error("an unknown preset is accepted")
	}
}

// TestBenchConfig: the flags reach the trainer's config, and every sequence
// the step sees is one document with consecutive positions and every target
// counted (the plain causal mask, which the fused GPU attention needs).
func TestBenchConfig(t *testing.T) {
	saved := bench
	defer func() { bench = saved }()
	bench = benchOpts{backend: "cpu", preset: "tiny", dtype: "bfloat16", gradAccum: 3, blockwise: true, deviceResident: true}
	const seqLen, steps, warmup = 64, 4, 1
	cfg, cleanup, err := benchConfig("layer", seqLen, steps, warmup, 32, 32, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if cfg.Model.Layers != 5 || cfg.Model.Dim != 64 || cfg.DType != dtypes.Float32 || cfg.Compute != dtypes.BFloat16 ||
		cfg.GradAccum != 3 || !cfg.Blockwise || !cfg.DeviceResident || cfg.Backend != "cpu" {
		t.Fatalf("config %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	corpus, _, err := data.OpenSplit(cfg.Sources, cfg.Heldout, cfg.Seed)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := data.NewTokenizer(cfg.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	l, err := data.NewLoader(corpus, tok, data.LoaderConfig{SeqLen: seqLen, Shuffle: cfg.Shuffle, Seed: cfg.Seed, Lanes: cfg.Interleave, Whole: cfg.WholeDocs})
	if err != nil {
		t.Fatal(err)
	}
	for i := range (steps + warmup) * 3 {
		b, err := l.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !model.Plain(model.Tokens{Pos: b.Pos, Doc: b.Doc}) {
			t.Fatalf("sequence %d is not one document with consecutive positions: pos %v doc %v", i, b.Pos, b.Doc)
		}
		if n := b.NumTargets(); n != seqLen {
			t.Fatalf("sequence %d: %d targets, want %d", i, n, seqLen)
		}
	}

	bench.dtype = "float32"
	if cfg, cleanup, err = benchConfig("layer", seqLen, steps, warmup, 32, 32, 2); err != nil {
		t.Fatal(err)
	}
	cleanup()
	if cfg.Compute != 0 {
		t.Errorf("float32: compute %s, want none", cfg.Compute)
	}
}

// TestTLSOrder: --mode tls's timed steps go in rounds of one plaintext and one
// TLS step, plaintext first in even rounds and TLS first in odd ones (ABBA).
func TestTLSOrder(t *testing.T) {
	const warmup = 1
	var got []bool
	for i := range warmup + 8 {
		got = append(got, tlsStep(i, warmup))
	}
	want := []bool{false, false, true, true, false, false, true, true, false}
	if !slices.Equal(got, want) {
		t.Errorf("TLS by step = %v, want %v", got, want)
	}
}

// TestTLSCompare: a step's time is its slower rank's; the ratio is of the
// medians; each round pairs its TLS step with its plaintext step.
func TestTLSCompare(t *testing.T) {
	tls := []bool{false, true, true, false}
	ws := [2]workerResult{
		{StepSeconds: []float64{10, 11, 12, 9}, CPUSeconds: []float64{1, 1, 1, 1}, WaitSeconds: make([]float64, 4), BytesSent: []int64{5, 5, 5, 5}, TLS: tls},
		{StepSeconds: []float64{10.5, 10, 10, 10}, CPUSeconds: []float64{1, 2, 2, 1}, WaitSeconds: make([]float64, 4), BytesSent: []int64{5, 5, 5, 5}, TLS: tls},
	}
	out := tlsCompare(ws, 4)
	// plaintext steps 10.5, 10; TLS steps 11, 12
	if got, want := out["ratio_tls_over_plaintext"].(float64), 11.5/10.25; math.Abs(got-want) > 1e-12 {
		t.Errorf("ratio = %v, want %v", got, want)
	}
	if got, want := out["round_ratios"].([]float64), []float64{11 / 10.5, 12.0 / 10}; !slices.Equal(got, want) {
		t.Errorf("round ratios = %v, want %v", got, want)
	}
	if got := out["cpu_ratio_tls_over_plaintext"].(float64); got != 1.5 {
		t.Errorf("CPU ratio = %v, want 1.5", got)
	}
}
