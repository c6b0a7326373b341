package main

import (
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
