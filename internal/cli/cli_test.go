package cli_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/internal/cli"
	"github.com/torusml/torus/model"
)

// A small recipe that trains in a second; {{DATA}} is replaced by a data path.
const tinyRecipe = `name: tiny
model:
  dim: 16
  layers: 1
  heads: 2
  kv_heads: 1
  mlp_dim: 32
data:
  sources:
    - type: text_file
      path: {{DATA}}
  seq_len: 16
memory:
  attn_block_q: 8
  attn_block_k: 8
schedule:
  steps: 2
  warmup_steps: 1
log:
  every: 1
`

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func run(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cli.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestTrainTinyRecipe(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("the quick brown fox jumps over the lazy dog. ", 20))
	rec := write(t, dir, "r.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data))
	runDir := filepath.Join(dir, "run")
	code, _, stderr := run("train", rec, "--out", runDir, "--progress", "plain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, f := range []string{"recipe.yaml", "metrics.jsonl", "final/config.json", "final/model.safetensors"} {
		if _, err := os.Stat(filepath.Join(runDir, f)); err != nil {
			t.Errorf("run directory lacks %s", f)
		}
	}
	lines := strings.Split(strings.TrimSpace(readFile(t, filepath.Join(runDir, "metrics.jsonl"))), "\n")
	if len(lines) != 2 {
		t.Fatalf("metrics.jsonl has %d lines, want 2", len(lines))
	}
	for _, key := range []string{`"step"`, `"loss"`, `"lr"`, `"grad_norm"`, `"tokens"`, `"tokens_per_s"`, `"step_seconds"`, `"peak_rss_bytes"`} {
		if !strings.Contains(lines[0], key) {
			t.Errorf("metrics line lacks %s: %s", key, lines[0])
		}
	}
	// A second run into the same directory must not overwrite the first.
	if code, _, stderr := run("train", rec, "--out", runDir); code == 0 || !strings.Contains(stderr, "already holds a run") {
		t.Errorf("training into a used run directory: exit %d, %q", code, stderr)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadInput: each bad input gives a non-zero exit and an error naming what is
// wrong and where, never a panic.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("some text to train on. ", 20))
	empty := write(t, dir, "empty.txt", "")
	good := strings.ReplaceAll(tinyRecipe, "{{DATA}}", data)

	// A model folder whose safetensors file is truncated, and one whose header lies.
	cfg := model.Config{Vocab: 256, Dim: 16, Layers: 1, Heads: 2, KVHeads: 1, MLPDim: 32, RopeTheta: 10000, NormEps: 1e-5}
	p, err := model.Init(cfg, dtypes.Float32, 0.02, 1)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated")
	if err := model.SaveHF(truncated, p, ""); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(truncated, "model.safetensors")
	b := []byte(readFile(t, st))
	if err := os.WriteFile(st, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	lying := filepath.Join(dir, "lying")
	if err := model.SaveHF(lying, p, ""); err != nil {
		t.Fatal(err)
	}
	st = filepath.Join(lying, "model.safetensors")
	b = []byte(readFile(t, st))
	hdr := strings.Replace(string(b), `"shape":[256,16]`, `"shape":[256,17]`, 1)
	if hdr == string(b) {
		t.Fatal("test setup: shape not found in header")
	}
	if err := os.WriteFile(st, []byte(hdr), 0o644); err != nil {
		t.Fatal(err)
	}

	sft := write(t, dir, "sft.jsonl", `{"prompt": "hi", "response": "hello"}`+"\n"+`{"prompt": "bye"}`+"\n")
	tinyBPE, _ := filepath.Abs("../../data/testdata/tinybpe")
	badJSON := write(t, dir, "bad-tokenizer.json", `{"model": {"type": "BPE", "vocab": {"a": 0}`)
	wordPiece := write(t, dir, "wordpiece-tokenizer.json", `{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`)
	parquetTypes, _ := filepath.Abs("../../data/testdata/parquet/types.parquet")
	withSource := func(src string) string {
		return strings.Replace(good, "    - type: text_file\n      path: "+data, src, 1)
	}
	sftRecipe := strings.Replace(good, "    - type: text_file\n      path: "+data, "    - type: sft\n      path: "+sft, 1)
	cases := []struct {
		name   string
		recipe string
		sets   []string
		want   []string // every one must appear in the error
	}{
		{"missing data", strings.ReplaceAll(tinyRecipe, "{{DATA}}", filepath.Join(dir, "nope.txt")), nil, []string{"nope.txt"}},
		{"empty data", strings.ReplaceAll(tinyRecipe, "{{DATA}}", empty), nil, []string{"empty.txt"}},
		{"no sources", "name: x\n", nil, []string{"data.sources"}},
		{"malformed YAML", good + "optim: [1, 2\n", nil, []string{"r.yaml:"}},
		{"unknown key", strings.Replace(good, "  layers: 1", "  layers: 1\n  layerz: 2", 1), nil, []string{`"layerz"`, "r.yaml:5"}},
		{"negative lr", good + "optim:\n  lr: -0.1\n", nil, []string{"optim.lr", "r.yaml:22"}},
		{"seq_len below 2", strings.Replace(good, "seq_len: 16", "seq_len: 1", 1), nil, []string{"data.seq_len", "r.yaml:12"}},
		{"kv_heads not dividing heads", strings.Replace(good, "kv_heads: 1", "kv_heads: 3", 1), nil, []string{"kv_heads", "r.yaml:6"}},
		{"bad --set", good, []string{"--set", "optim.lrr=1"}, []string{"optim.lrr"}},
		{"lora target that does not exist", good + "lora:\n  rank: 4\n  targets: [q, qkv]\n", nil, []string{"lora.targets.1", `"qkv"`, "r.yaml:23"}},
		{"lora rank 0", good + "lora: {rank: 0}\n", nil, []string{"lora.rank", "r.yaml:21"}},
		{"sft record without a response", sftRecipe, nil, []string{"sft.jsonl:2", `"response"`}},
		{"unknown rope_scaling type", strings.Replace(good, "  mlp_dim: 32", "  mlp_dim: 32\n  rope_scaling: {type: ntk-aware, factor: 2}", 1), nil,
			[]string{"model.rope_scaling.type", `"ntk-aware"`, "r.yaml:8"}},
		{"truncated safetensors", good + "  from: " + truncated + "\n", nil, []string{"model.safetensors"}},
		{"lying safetensors header", good + "  from: " + lying + "\n", nil, []string{"model.safetensors"}},
		{"tokenizer larger than the vocabulary", good, []string{"--set", "data.tokenizer=" + tinyBPE, "--set", "model.vocab=4"},
			[]string{"tokenizer", "has 8 tokens but the model's vocabulary is 4"}},
		{"malformed tokenizer.json", good, []string{"--set", "data.tokenizer=" + badJSON}, []string{badJSON}},
		{"unsupported tokenizer model", good, []string{"--set", "data.tokenizer=" + wordPiece}, []string{wordPiece, "WordPiece"}},
		{"parquet without the column", withSource("    - type: parquet\n      path: " + parquetTypes + "\n      column: body"), nil,
			[]string{"types.parquet", `no column "body"`, "id, text"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := tc.recipe
			if strings.HasSuffix(rec, "\n  from: "+truncated+"\n") || strings.HasSuffix(rec, "\n  from: "+lying+"\n") {
				// `from:` belongs under model:, not at the end: move it there.
				from := rec[strings.LastIndex(rec, "  from: "):]
				rec = strings.Replace(strings.TrimSuffix(rec, from), "model:\n", "model:\n"+from, 1)
			}
			path := write(t, t.TempDir(), "r.yaml", rec)
			args := append([]string{"train", path, "--out", filepath.Join(t.TempDir(), "run")}, tc.sets...)
			code, _, stderr := run(args...)
			if code == 0 {
				t.Fatalf("exit 0, want an error; stderr: %s", stderr)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("panicked: %s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestBinaryExitStatus runs the real binary once: a bad recipe exits non-zero.
func TestBinaryExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "torus")
	build := exec.Command("go", "build", "-o", bin, "github.com/torusml/torus/cmd/torus")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	rec := write(t, dir, "r.yaml", "name: x\nmodle: {}\n")
	out, err := exec.Command(bin, "recipe", "check", rec).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v: %s", err, out)
	}
	if !strings.Contains(string(out), `"modle"`) || !strings.Contains(string(out), "r.yaml:2") {
		t.Errorf("error does not name the key and line: %s", out)
	}
}
