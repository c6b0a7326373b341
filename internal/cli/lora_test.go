package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// TestTrainLoRA: fine-tuning a trained model with adapters through the binary's
// commands: only the adapters (and the norms asked for) move; the checkpoint is
// a PEFT adapter beside the base; export --format peft writes PEFT's folder and
// --format hf the merged model, which is what run/final holds too.
func TestTrainLoRA(t *testing.T) {
	dir := t.TempDir()
	data := write(t, dir, "text.txt", strings.Repeat("the quick brown fox jumps over the lazy dog. ", 20))
	base := filepath.Join(dir, "base")
	rec := write(t, dir, "base.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data))
	if code, _, stderr := run("train", rec, "--out", base, "--progress", "none"); code != 0 {
		t.Fatalf("base: exit %d: %s", code, stderr)
	}
	ft := strings.ReplaceAll(tinyRecipe, "{{DATA}}", data) +
		"lora:\n  rank: 2\n  alpha: 4\n  targets: [q, v, down]\n  trainable: [norm]\n" +
		"checkpoint:\n  every_steps: 2\n"
	ft = strings.Replace(ft, "model:\n", "model:\n  from: "+filepath.Join(base, "final")+"\n", 1)
	rec = write(t, dir, "ft.yaml", ft)
	runDir := filepath.Join(dir, "ft")
	if code, _, stderr := run("train", rec, "--out", runDir, "--progress", "none"); code != 0 {
		t.Fatalf("lora: exit %d: %s", code, stderr)
	}
	ckpt := filepath.Join(runDir, "ckpt", "step-000002")
	for _, f := range []string{model.AdapterConfigFile, model.AdapterFile, "model.safetensors"} {
		if _, err := os.Stat(filepath.Join(ckpt, f)); err != nil {
			t.Errorf("checkpoint lacks %s", f)
		}
	}
	if code, _, stderr := run("ckpt", "verify", runDir); code != 0 {
		t.Errorf("ckpt verify: exit %d: %s", code, stderr)
	}
	before, err := model.LoadHF(filepath.Join(base, "final"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	frozen, err := model.LoadHF(ckpt, dtypes.Float32) // the checkpoint's base weights
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range before.Names() {
		same := slices.Equal(host.ToFloat64(before.T[n]), host.ToFloat64(frozen.T[n]))
		if same == model.IsNorm(n) {
			t.Errorf("%s: unchanged %v, but norms train and projections are frozen", n, same)
		}
	}

	peft := filepath.Join(dir, "peft")
	if code, _, stderr := run("export", runDir, "--format", "peft", "--out", peft, "--base-model", "my/base"); code != 0 {
		t.Fatalf("export peft: exit %d: %s", code, stderr)
	}
	if cfg := readFile(t, filepath.Join(peft, model.AdapterConfigFile)); !strings.Contains(cfg, `"base_model_name_or_path": "my/base"`) ||
		!strings.Contains(cfg, `"q_proj"`) || !strings.Contains(cfg, `"down_proj"`) {
		t.Errorf("adapter_config.json:\n%s", cfg)
	}
	hf := filepath.Join(dir, "hf")
	if code, _, stderr := run("export", runDir, "--format", "hf", "--out", hf); code != 0 {
		t.Fatalf("export hf: exit %d: %s", code, stderr)
	}
	merged, err := model.LoadHF(hf, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	final, err := model.LoadHF(filepath.Join(runDir, "final"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	viaPEFT, err := model.LoadInference(ckpt, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range merged.Names() {
		m := host.ToFloat64(merged.T[n])
		if !slices.Equal(m, host.ToFloat64(final.T[n])) || !slices.Equal(m, host.ToFloat64(viaPEFT.T[n])) {
			t.Errorf("%s: the hf export, run/final and the checkpoint loaded with its adapter disagree", n)
		}
	}
	if slices.Equal(host.ToFloat64(merged.T["model.layers.0.self_attn.q_proj.weight"]), host.ToFloat64(before.T["model.layers.0.self_attn.q_proj.weight"])) {
		t.Error("the merged q_proj equals the base's: the adapters were not merged")
	}

	// Bad input: an export of a run without adapters as peft, lora.dropout.
	if code, _, stderr := run("export", base, "--format", "peft", "--out", filepath.Join(dir, "x")); code == 0 || !strings.Contains(stderr, "no LoRA adapters") {
		t.Errorf("export --format peft of a run without adapters: exit %d: %s", code, stderr)
	}
	rec = write(t, dir, "drop.yaml", strings.ReplaceAll(tinyRecipe, "{{DATA}}", data)+"lora: {rank: 2, dropout: 0.1}\n")
	if code, _, stderr := run("train", rec, "--out", filepath.Join(dir, "drop")); code == 0 || !strings.Contains(stderr, "lora.dropout") {
		t.Errorf("lora.dropout 0.1: exit %d: %s", code, stderr)
	}
}
