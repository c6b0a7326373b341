package recipe_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/torusml/torus/recipe"
)

// base is the smallest valid recipe: four lines, so a body appended to it
// starts on line 5.
const base = `data:
  sources:
    - type: text_dir
      path: /corpus
`

// withSource is Default with one source added, as code would build it.
func withSource() recipe.Recipe {
	r := recipe.Default()
	r.Data.Sources = []recipe.SourceConfig{{Type: "text_dir", Path: "/corpus", DocPer: "file"}}
	return r
}

// sameValues reports whether a and b have equal exported fields (the
// unexported origins differ between parses of different files).
func sameValues(a, b recipe.Recipe) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !va.Type().Field(i).IsExported() {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return false
		}
	}
	return true
}

func TestDefault(t *testing.T) {
	want := recipe.Recipe{
		Name: "run", Seed: 1, Backend: "auto",
		Model: recipe.ModelConfig{
			Vocab: 256, Dim: 256, Layers: 4, Heads: 8, KVHeads: 4, HeadDim: 0, MLPDim: 688,
			RopeTheta: 10000, NormEps: 1e-5, TieEmbeddings: false, DType: "float32", InitStd: 0.02,
			RopeScaling: recipe.RopeScalingConfig{Type: "none", LowFreqFactor: 1, HighFreqFactor: 4, BetaFast: 32, BetaSlow: 1},
		},
		LoRA:      recipe.LoRAConfig{Alpha: 16, Targets: []string{"q", "k", "v", "o"}, BaseDType: "stored"},
		Data:      recipe.DataConfig{Tokenizer: "byte", SeqLen: 1024, Shuffle: true, Interleave: 8, Pack: "split"},
		Parallel:  recipe.ParallelConfig{Workers: 1, DP: 1, Strategy: "ring", Balance: "adaptive"},
		Attention: recipe.AttentionConfig{Kernel: "auto"},
		Memory:    recipe.MemoryConfig{Recompute: "layer", Offload: "none", AttnBlockQ: 256, AttnBlockK: 256, LossChunk: 2048},
		Optim: recipe.OptimConfig{
			LR: 3e-4, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, MaxGradNorm: 1.0,
			OnNonFinite: "stop", NonFiniteLimit: 5,
		},
		Schedule:   recipe.ScheduleConfig{Steps: 1000, WarmupSteps: 100, Decay: "cosine", MinLRRatio: 0.1, GradAccum: 1},
		Checkpoint: recipe.CheckpointConfig{EverySteps: 100, KeepLast: 2},
		Launch:     recipe.LaunchConfig{MaxRestarts: 3},
		Log:        recipe.LogConfig{Every: 10, Progress: "auto", EvalBatches: 8},
	}
	if got := recipe.Default(); !sameValues(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}
}

func TestDefaultValidates(t *testing.T) {
	tests := []struct {
		name    string
		r       func() recipe.Recipe
		wantErr string // "" for valid
	}{
		{"no sources", recipe.Default, "data.sources: at least one source is needed"},
		{"one text_dir source", withSource, ""},
		{"one jsonl source", func() recipe.Recipe {
			r := recipe.Default()
			r.Data.Sources = []recipe.SourceConfig{{Type: "jsonl", Path: "/x.jsonl", Field: "text"}}
			return r
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r().Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseFillsDefaults(t *testing.T) {
	src := `data:
  sources:
    - {type: text_dir, path: /a}
    - {type: text_dir, path: /b, doc_per: directory}
    - {type: jsonl, path: /c.jsonl}
    - {type: jsonl, path: /d.jsonl, field: body}
    - {type: text_file, path: /e.txt}
`
	r, err := recipe.Parse("recipe.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []recipe.SourceConfig{
		{Type: "text_dir", Path: "/a", DocPer: "file"},
		{Type: "text_dir", Path: "/b", DocPer: "directory"},
		{Type: "jsonl", Path: "/c.jsonl", Field: "text"},
		{Type: "jsonl", Path: "/d.jsonl", Field: "body"},
		{Type: "text_file", Path: "/e.txt"},
	}
	if !reflect.DeepEqual(r.Data.Sources, want) {
		t.Errorf("sources = %+v\nwant %+v", r.Data.Sources, want)
	}
	d := withSource()
	d.Data.Sources = r.Data.Sources
	if !sameValues(r, d) {
		t.Errorf("keys the file left out did not keep their defaults:\n%+v", r)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		src  string
		sets []string
	}{
		{"defaults", base, nil},
		{"everything set", `name: "yes"
seed: -9223372036854775808
backend: go
model:
  from: ""
  vocab: 32000
  dim: 4096
  layers: 32
  heads: 32
  kv_heads: 8
  head_dim: 128
  mlp_dim: 11008
  rope_theta: 500000
  norm_eps: 1e-6
  tie_embeddings: true
  dtype: float64
  init_std: 1e-300
data:
  sources:
    - type: text_dir
      path: $GOROOT/src
      include: ["*.go", "[a-z]*.md"]
      doc_per: directory
    - {type: jsonl, path: "/data/a: b #c.jsonl", field: "123"}
    - {type: text_file, path: "naïve\tpath\nwith newline"}
  seq_len: 4096
  shuffle: false
optim:
  lr: 0.1
  beta1: 0
  beta2: 0.999999999999
  eps: 1e-12
  weight_decay: 0
  max_grad_norm: 0
  decay_norms: true
  decay_embeddings: true
schedule:
  steps: 123456789
  warmup_steps: 0
  decay: constant
  min_lr_ratio: 1
  grad_accum: 64
log:
  every: 1
  progress: none
`, []string{"optim.lr=3.14159e-5", "name=true"}},
		{"from a folder", "model: {from: /models/llama, vocab: 0}\n" + base, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := recipe.Parse("recipe.yaml", []byte(tt.src), tt.sets)
			if err != nil {
				t.Fatal(err)
			}
			for _, enc := range []struct {
				name string
				fn   func(recipe.Recipe) ([]byte, error)
			}{{"YAML", recipe.Recipe.YAML}, {"AnnotatedYAML", recipe.Recipe.AnnotatedYAML}} {
				out, err := enc.fn(r)
				if err != nil {
					t.Fatalf("%s: %v", enc.name, err)
				}
				back, err := recipe.Parse("resolved.yaml", out, nil)
				if err != nil {
					t.Fatalf("%s does not parse back: %v\n%s", enc.name, err, out)
				}
				if !sameValues(r, back) {
					t.Errorf("%s round trip changed the recipe:\n got %+v\nwant %+v\n%s", enc.name, back, r, out)
				}
				if r.Hash() != back.Hash() {
					t.Errorf("%s round trip changed the hash", enc.name)
				}
			}
		})
	}
}

func TestYAMLIsComplete(t *testing.T) {
	r, err := recipe.Parse("recipe.yaml", []byte(base), []string{"optim.lr=1e-3"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"name: run\n", "seed: 1\n", "backend: auto\n", "  from: \"\"\n", "  kv_heads: 4\n",
		"  rope_theta: 10000.0\n", "  norm_eps: 1e-05\n", "      doc_per: file\n", "      include: []\n",
		"  lr: 0.001\n", "  recompute: layer\n", "  warmup_steps: 100\n", "  progress: auto\n",
		"  tensorboard: false\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("YAML lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "#") {
		t.Errorf("YAML has comments; only AnnotatedYAML should:\n%s", out)
	}
	ann, err := r.AnnotatedYAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"name: run # default\n", "  lr: 0.001 # --set optim.lr=1e-3\n", "      path: /corpus # recipe.yaml:4\n",
	} {
		if !strings.Contains(string(ann), want) {
			t.Errorf("AnnotatedYAML lacks %q:\n%s", want, ann)
		}
	}
}

func TestHash(t *testing.T) {
	a, err := recipe.Parse("a.yaml", []byte(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same values from elsewhere: a different file, a --set.
	b, err := recipe.Parse("b.yaml", []byte("optim: {lr: 1}\n"+base), []string{"optim.lr=3e-4"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := recipe.Parse("a.yaml", []byte(base), []string{"seed=2"})
	if err != nil {
		t.Fatal(err)
	}
	if h := a.Hash(); len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Errorf("Hash() = %q, want 64 hex digits", h)
	}
	if a.Hash() != b.Hash() {
		t.Errorf("same values, different hashes")
	}
	if a.Hash() == c.Hash() {
		t.Errorf("different seeds, same hash")
	}
	if a.Hash() != withSource().Hash() {
		t.Errorf("parsed and built-in-code recipes with the same values hash differently")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(base+"seed: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(base+"seed: 7\noptim:\n  lr: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	r, err := recipe.Load(good, []string{"schedule.steps=10", "schedule.warmup_steps=1"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seed != 7 || r.Schedule.Steps != 10 {
		t.Errorf("Load(%s) = %+v", good, r)
	}
	tests := []struct {
		path string
		want string
	}{
		{missing, "recipe: open " + missing + ": no such file or directory"},
		{bad, bad + ":7: optim.lr: must be > 0, got -1"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			_, err := recipe.Load(tt.path, nil)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Load(%s) = %v, want %q", tt.path, err, tt.want)
			}
		})
	}
	if _, err := recipe.Load(missing, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want an os.ErrNotExist", err)
	}
}
