package cli_test

import (
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// evalRecipe trains in a second on six documents and holds two of them out.
const evalRecipe = `name: evaltiny
model:
  dim: 16
  layers: 1
  heads: 2
  kv_heads: 1
  mlp_dim: 32
data:
  sources:
    - type: text_dir
      path: {{DATA}}
  seq_len: 32
  heldout: 2
memory:
  attn_block_q: 16
  attn_block_k: 16
schedule:
  steps: 2
  warmup_steps: 1
log:
  every: 1
`

// trainedRun trains evalRecipe (about a second) and returns its run
// directory: ckpt/step-000002, final/, recipe.yaml.
func trainedRun(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs")
	if err := os.MkdirAll(docs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		write(t, docs, fmt.Sprintf("d%d.txt", i), strings.Repeat(fmt.Sprintf("document %d: the quick brown fox jumps over the lazy dog. ", i), 1+i%3))
	}
	rec := write(t, dir, "r.yaml", strings.ReplaceAll(evalRecipe, "{{DATA}}", docs))
	runDir := filepath.Join(dir, "run")
	if code, _, stderr := run("train", rec, "--out", runDir, "--progress", "none"); code != 0 {
		t.Fatalf("train: exit %d: %s", code, stderr)
	}
	return runDir
}

func TestEvalPPL(t *testing.T) {
	runDir := trainedRun(t)
	code, stdout, stderr := run("eval", runDir, "--task", "ppl", "--buckets", "0,8,16,32")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"2 held-out documents", "positions", "0-8", "8-16", "16-32", "all", "perplexity"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "ppl: document 2/2") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	var rep struct {
		Task  string
		Model string
		Step  int
		PPL   struct {
			Docs    int
			Tokens  int
			PPL     float64
			Buckets []struct{ From, To, Tokens int }
		}
	}
	report := filepath.Join(runDir, "eval", "ppl-step-000002.json")
	if err := json.Unmarshal([]byte(readFile(t, report)), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Task != "ppl" || rep.Step != 2 || rep.PPL.Docs != 2 || len(rep.PPL.Buckets) != 3 || rep.PPL.Buckets[0].Tokens != 2*7 {
		t.Errorf("report: %+v", rep)
	}
	// A byte model that has barely trained is close to uniform over 256 bytes.
	if rep.PPL.PPL < 50 || rep.PPL.PPL > 1000 {
		t.Errorf("perplexity %g of a barely trained byte model", rep.PPL.PPL)
	}
	// --split all scores all six documents; --docs 1 the first held-out one.
	if code, stdout, stderr := run("eval", runDir, "--task", "ppl", "--split", "all", "--out", t.TempDir()); code != 0 || !strings.Contains(stdout, "on 6 documents") {
		t.Errorf("--split all: exit %d: %s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := run("eval", runDir, "--task", "ppl", "--docs", "1", "--length", "16", "--out", t.TempDir()); code != 0 || !strings.Contains(stdout, "on 1 held-out documents") || !strings.Contains(stdout, "0-16") {
		t.Errorf("--docs 1 --length 16: exit %d: %s%s", code, stdout, stderr)
	}
}

func TestEvalPasskey(t *testing.T) {
	runDir := trainedRun(t)
	out := t.TempDir()
	ckpt := filepath.Join(runDir, "ckpt", "step-000002")
	code, stdout, stderr := run("eval", ckpt, "--task", "passkey", "--lengths", "128,160", "--depths", "0,1", "--samples", "2", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"length \\ depth", "128", "160", "mean", "%"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "cell 4/4 length 160 depth 1.00 sample 2/2") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	var rep struct {
		Passkey struct {
			Lengths  []int
			Depths   []float64
			Accuracy [][]float64
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(out, "passkey-step-000002.json"))), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Passkey.Accuracy) != 2 || len(rep.Passkey.Accuracy[0]) != 2 || rep.Passkey.Lengths[1] != 160 {
		t.Errorf("report: %+v", rep)
	}
	f, err := os.Open(filepath.Join(out, "passkey-step-000002.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("heatmap: %v", err)
	}
}

func TestGenerate(t *testing.T) {
	runDir := trainedRun(t)
	args := []string{"generate", runDir, "--prompt", "the quick ", "--max-tokens", "12"}
	code, greedy, stderr := run(args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if len(greedy) != 12 { // the byte tokenizer: one byte per token
		t.Errorf("greedy wrote %d bytes, want 12: %q", len(greedy), greedy)
	}
	if !strings.Contains(stderr, "12 tokens in") || !strings.Contains(stderr, "greedy") {
		t.Errorf("stderr: %s", stderr)
	}
	if _, again, _ := run(append(args, "--no-cache")...); again != greedy {
		t.Errorf("greedy without the KV cache %q, with %q", again, greedy)
	}
	sampled := append(args, "--temperature", "0.9", "--top-p", "0.95", "--seed", "7")
	_, a, _ := run(sampled...)
	_, b, _ := run(sampled...)
	if a != b || len(a) != 12 {
		t.Errorf("seed 7 twice: %q, %q", a, b)
	}
	// The final model folder, a plain Hugging Face folder, works too.
	if code, _, stderr := run("generate", filepath.Join(runDir, "final"), "--prompt", "x", "--max-tokens", "3"); code != 0 {
		t.Errorf("final/: exit %d: %s", code, stderr)
	}
}

// TestEvalLoRACheckpoint: a LoRA checkpoint (the base model and a PEFT adapter
// beside it) evaluates as its merged model, which run/final holds: eval loads
// through model.LoadInference.
func TestEvalLoRACheckpoint(t *testing.T) {
	base := trainedRun(t)
	dir := filepath.Dir(base)
	ft := readFile(t, filepath.Join(dir, "r.yaml")) + "lora:\n  rank: 2\n  alpha: 4\n  targets: [q, v, down]\noptim:\n  lr: 0.02\n"
	ft = strings.Replace(ft, "model:\n", "model:\n  from: "+filepath.Join(base, "final")+"\n", 1)
	ftRun := filepath.Join(dir, "ft")
	if code, _, stderr := run("train", write(t, dir, "ft.yaml", ft), "--out", ftRun, "--progress", "none"); code != 0 {
		t.Fatalf("lora: exit %d: %s", code, stderr)
	}
	nll := func(model string) float64 {
		t.Helper()
		out := t.TempDir()
		if code, _, stderr := run("eval", model, "--task", "ppl", "--out", out); code != 0 {
			t.Fatalf("eval %s: exit %d: %s", model, code, stderr)
		}
		var rep struct {
			PPL struct {
				MeanNLL float64 `json:"mean_nll"`
			}
		}
		if err := json.Unmarshal([]byte(readFile(t, filepath.Join(out, "ppl-"+filepath.Base(model)+".json"))), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.PPL.MeanNLL
	}
	ckpt, final := nll(filepath.Join(ftRun, "ckpt", "step-000002")), nll(filepath.Join(ftRun, "final"))
	before := nll(filepath.Join(base, "final")) // the base alone, on the same held-out documents
	if ckpt == 0 || math.Abs(ckpt-final) > 1e-6*final {
		t.Errorf("mean NLL of the LoRA checkpoint %.8f, of the merged final model %.8f", ckpt, final)
	}
	if math.Abs(ckpt-before) < 1e-4*before {
		t.Errorf("test setup: the adapters hardly change the model (mean NLL %.8f, the base's %.8f): the check would not see them ignored", ckpt, before)
	}
}

// TestEvalBadInput: each bad input exits non-zero with an error naming the flag
// or the path, never a panic. The flags are checked before the model loads.
func TestEvalBadInput(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-run")
	hf := filepath.Join(dir, "hf")
	if err := os.MkdirAll(hf, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, hf, "config.json", "{}")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing checkpoint", []string{"eval", missing, "--task", "passkey"}, []string{"no-such-run", "no such file"}},
		{"missing checkpoint, generate", []string{"generate", missing, "--prompt", "x"}, []string{"no-such-run"}},
		{"folder that is no model", []string{"eval", dir, "--task", "passkey"}, []string{dir, "no checkpoint"}},
		{"no task", []string{"eval", missing}, []string{"--task"}},
		{"unknown task", []string{"eval", missing, "--task", "bleu"}, []string{"--task", "bleu"}},
		{"lengths unparseable", []string{"eval", missing, "--task", "passkey", "--lengths", "1k,4q"}, []string{"--lengths", "4q"}},
		{"length too short", []string{"eval", missing, "--task", "passkey", "--lengths", "50"}, []string{"--lengths", "50"}},
		{"depth above 1", []string{"eval", missing, "--task", "passkey", "--depths", "0,1.5"}, []string{"--depths", "1.5"}},
		{"depth below 0", []string{"eval", missing, "--task", "passkey", "--depths", "-0.25"}, []string{"--depths", "-0.25"}},
		{"depth not a number", []string{"eval", missing, "--task", "passkey", "--depths", "half"}, []string{"--depths", "half"}},
		{"samples 0", []string{"eval", missing, "--task", "passkey", "--samples", "0"}, []string{"--samples"}},
		{"passkey flag on ppl", []string{"eval", missing, "--task", "ppl", "--lengths", "4k"}, []string{"--lengths", "ppl"}},
		{"ppl flag on passkey", []string{"eval", missing, "--task", "passkey", "--docs", "3"}, []string{"--docs", "passkey"}},
		{"ppl length", []string{"eval", missing, "--task", "ppl", "--length", "eight"}, []string{"--length", "eight"}},
		{"ppl buckets", []string{"eval", missing, "--task", "ppl", "--buckets", "8,16"}, []string{"--buckets"}},
		{"ppl split", []string{"eval", missing, "--task", "ppl", "--split", "train"}, []string{"--split", "train"}},
		{"ppl without a recipe", []string{"eval", hf, "--task", "ppl"}, []string{"--recipe"}},
		{"temperature below 0", []string{"generate", missing, "--prompt", "x", "--temperature", "-1"}, []string{"--temperature", "-1"}},
		{"top-p 0", []string{"generate", missing, "--prompt", "x", "--top-p", "0"}, []string{"--top-p", "0"}},
		{"top-p above 1", []string{"generate", missing, "--prompt", "x", "--top-p", "1.5"}, []string{"--top-p", "1.5"}},
		{"max tokens 0", []string{"generate", missing, "--prompt", "x", "--max-tokens", "0"}, []string{"--max-tokens"}},
		{"no prompt", []string{"generate", missing}, []string{"--prompt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(tc.args...)
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
