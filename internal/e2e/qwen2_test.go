package e2e

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/device"
	"github.com/torusml/torus/eval"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// TestQwen2LoRAExport (issue 17, criterion 2): a Qwen2-shaped folder (q/k/v
// biases, rope theta 1e6, model_type qwen2) loads through model.from, trains
// with LoRA, and `torus export --format hf` writes a Qwen2 folder whose logits
// equal the trained model's (its checkpoint: the base with the adapters)
// within 1e-5.
func TestQwen2LoRAExport(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "qwen2")
	cfg := model.Config{Vocab: 256, Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 64, RopeTheta: 1e6, NormEps: 1e-6,
		MaxPositions: 512, QKVBias: true}
	p, err := model.Init(cfg, dtypes.Float32, 0.05, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, name := range p.Names() { // Init leaves biases zero: make them count
		if model.IsBias(name) {
			v := host.ToFloat64(p.T[name])
			for i := range v {
				v[i] = rng.NormFloat64() * 0.5
			}
			p.T[name] = host.FromFloat64(dtypes.Float32, v, p.T[name].Shape().Dimensions...)
		}
	}
	if err := model.ExportHF(base, p, model.HFExport{DType: "float32"}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(base, "config.json")); err != nil || !strings.Contains(string(b), `"model_type": "qwen2"`) || !strings.Contains(string(b), `"use_sliding_window": false`) {
		t.Fatalf("the base folder's config.json is not Qwen2's (%v):\n%s", err, b)
	}

	text := filepath.Join(dir, "text.txt")
	if err := os.WriteFile(text, []byte(sampleText(20000)), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "qwen2-lora.yaml")
	if err := os.WriteFile(rec, []byte(fmt.Sprintf(`name: qwen2-lora
model: {from: %s}
lora: {rank: 4, alpha: 8, targets: [q, k, v, o, gate, up, down]}
data: {sources: [{type: text_file, path: %s}], seq_len: 64}
memory: {attn_block_q: 16, attn_block_k: 16}
optim: {lr: 0.01}
schedule: {steps: 20, warmup_steps: 2}
checkpoint: {every_steps: 20}
`, base, text)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if out, err := exec.Command(torus, "train", rec, "--out", run, "--progress", "none").CombinedOutput(); err != nil {
		t.Fatalf("torus train: %v\n%s", err, out)
	}
	exported := filepath.Join(dir, "exported")
	if out, err := exec.Command(torus, "export", run, "--format", "hf", "--out", exported).CombinedOutput(); err != nil {
		t.Fatalf("torus export: %v\n%s", err, out)
	}

	be, err := device.Open("cpu", device.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := []int32{'f', 'u', 'n', 'c', ' ', 'm', 'a', 'i', 'n', '(', ')', ' ', '{', '}', '\n', 3, 200}
	logits := func(folder string) []float64 {
		m, err := eval.Load(folder, be.Compute)
		if err != nil {
			t.Fatalf("load %s: %v", folder, err)
		}
		l, err := m.Forward(context.Background(), tokens)
		if err != nil {
			t.Fatal(err)
		}
		return host.ToFloat64(l)
	}
	trained := logits(filepath.Join(run, "ckpt", "step-000020"))
	got := logits(exported)
	before := logits(base)
	worst, moved := 0.0, 0.0
	for i := range trained {
		worst = max(worst, math.Abs(got[i]-trained[i]))
		moved = max(moved, math.Abs(trained[i]-before[i]))
	}
	t.Logf("export vs trained: max |logit difference| %.3g; training moved logits by up to %.3g", worst, moved)
	if worst > 1e-5 {
		t.Errorf("the export's logits differ from the trained model's by up to %.3g (want <= 1e-5)", worst)
	}
	if moved < 1e-3 {
		t.Errorf("LoRA training moved no logit by more than %.3g: the comparison says nothing", moved)
	}
}

// sampleText is n bytes of varied English-like text.
func sampleText(n int) string {
	words := []string{"the", "ring", "of", "workers", "trains", "a", "model", "on", "long", "sequences", "and", "checkpoints", "stream", "to", "disk."}
	rng := rand.New(rand.NewPCG(1, 1))
	var b []byte
	for len(b) < n {
		b = append(b, words[rng.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return string(b[:n])
}
