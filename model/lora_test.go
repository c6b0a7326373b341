package model_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
)

// loraParams is tinyParams with adapters whose B is not zero (as after training).
func loraParams(t *testing.T, tied bool, l model.LoRA) *model.Params {
	t.Helper()
	p := tinyParams(t, tied, dtypes.Float32)
	if err := model.AddLoRA(p, l, 2); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	for _, n := range p.AdapterNames() {
		if strings.HasSuffix(n, "lora_B.weight") {
			v := make([]float64, p.T[n].Size())
			for i := range v {
				v[i] = rng.NormFloat64() * 0.3
			}
			p.T[n] = host.FromFloat64(p.DType, v, p.T[n].Shape().Dimensions...)
		}
	}
	return p
}

// TestMergedExportLogits: the logits of a model with adapters as training runs
// it (adapters merged per layer in the graph) equal, within 1e-5, those of its
// merged Hugging Face export loaded back, and of LoadInference on a folder that
// holds the base model and the PEFT adapter; the adapters matter (the base
// model's logits differ).
func TestMergedExportLogits(t *testing.T) {
	for _, tied := range []bool{false, true} {
		l := model.LoRA{Rank: 3, Alpha: 6, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, TrainEmbed: true, TrainNorm: true}
		p := loraParams(t, tied, l)
		backend := testBackend(t)
		pieces, err := model.NewPieces(backend, p.Config)
		if err != nil {
			t.Fatal(err)
		}
		lp, err := model.NewLoRAPieces(backend, p.Config, *p.LoRA)
		if err != nil {
			t.Fatal(err)
		}
		tokens := []int32{1, 7, 3, 3, 10, 0, 5, 2, 9, 4, 4}
		trained := host.ToFloat64(forwardWith(t, pieces, p, tokens, func(i int) (model.LayerWeights, error) { return lp.Layer(p, i) }))

		merged, err := model.MergeLoRA(p)
		if err != nil {
			t.Fatal(err)
		}
		hf := t.TempDir()
		if err := model.ExportHF(hf, merged, model.HFExport{DType: "float32"}); err != nil {
			t.Fatal(err)
		}
		both := t.TempDir() // what a checkpoint of a LoRA run holds
		if err := model.SaveHF(both, &model.Params{Config: p.Config, DType: p.DType, T: p.T}, "float32"); err != nil {
			t.Fatal(err)
		}
		if err := model.WritePEFT(both, p, 0, "", "float32"); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []string{hf, both} {
			q, err := model.LoadInference(dir, dtypes.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if q.LoRA != nil {
				t.Fatalf("LoadInference(%s) kept the adapters apart", dir)
			}
			got := host.ToFloat64(forwardLogits(t, pieces, q, tokens))
			e := maxRel(got, trained)
			if e > 1e-5 {
				t.Errorf("tied %v, %s: logits differ from the trained model's by %.3g (relative), want <= 1e-5", tied, filepath.Base(dir), e)
			}
			t.Logf("tied %v, %s: merged logits within %.2g of the trained model's", tied, filepath.Base(dir), e)
		}
		base, err := model.LoadHF(both, dtypes.Float32) // the base weights alone
		if err != nil {
			t.Fatal(err)
		}
		if e := maxRel(host.ToFloat64(forwardLogits(t, pieces, base, tokens)), trained); e < 1e-3 {
			t.Errorf("the adapters change the logits by only %.3g: the test would not see a lost adapter", e)
		}
	}
}

func maxRel(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		num = max(num, math.Abs(got[i]-want[i]))
		den = max(den, math.Abs(want[i]))
	}
	return num / den
}

// TestPEFTFolder: the adapter folder follows PEFT's conventions (config keys
// and values, tensor names and shapes) and reads back bitwise.
func TestPEFTFolder(t *testing.T) {
	l := model.LoRA{Rank: 2, Alpha: 16, Targets: []string{"v", "q", "down"}, TrainEmbed: true, TrainNorm: true}
	p := loraParams(t, false, l)
	dir := t.TempDir()
	if err := model.WritePEFT(dir, p, 0.05, "meta-llama/Llama-2-7b-hf", "float32"); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, model.AdapterConfigFile))), &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
		"r": 2.0, "lora_alpha": 16.0, "lora_dropout": 0.05,
		"target_modules":  []any{"q_proj", "v_proj", "down_proj"},
		"modules_to_save": []any{"embed_tokens", "norm"},
		"bias":            "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
		"use_rslora": false, "use_dora": false, "layers_to_transform": nil, "layers_pattern": nil,
		"rank_pattern": map[string]any{}, "alpha_pattern": map[string]any{}, "revision": nil,
	}
	for k, v := range want {
		gv, ok := cfg[k]
		if !ok {
			t.Errorf("adapter_config.json has no %q", k)
			continue
		}
		if g, _ := json.Marshal(gv); string(g) != mustJSON(t, v) {
			t.Errorf("adapter_config.json %q = %s, want %s", k, g, mustJSON(t, v))
		}
	}
	infos, _, err := safetensors.Header(filepath.Join(dir, model.AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{}
	for _, in := range infos {
		got[in.Name] = in.Shape
		if in.DType != dtypes.Float32 {
			t.Errorf("%s is %s", in.Name, in.DType)
		}
	}
	c := p.Config
	hd := c.HeadDimension()
	wantShapes := map[string][]int{
		"base_model.model.model.embed_tokens.weight": {c.Vocab, c.Dim},
		"base_model.model.model.norm.weight":         {c.Dim},
	}
	for i := range c.Layers {
		pre := "base_model.model.model.layers." + string(rune('0'+i)) + "."
		wantShapes[pre+"input_layernorm.weight"] = []int{c.Dim}
		wantShapes[pre+"post_attention_layernorm.weight"] = []int{c.Dim}
		wantShapes[pre+"self_attn.q_proj.lora_A.weight"] = []int{2, c.Dim}
		wantShapes[pre+"self_attn.q_proj.lora_B.weight"] = []int{c.Heads * hd, 2}
		wantShapes[pre+"self_attn.v_proj.lora_A.weight"] = []int{2, c.Dim}
		wantShapes[pre+"self_attn.v_proj.lora_B.weight"] = []int{c.KVHeads * hd, 2}
		wantShapes[pre+"mlp.down_proj.lora_A.weight"] = []int{2, c.MLPDim}
		wantShapes[pre+"mlp.down_proj.lora_B.weight"] = []int{c.Dim, 2}
	}
	if len(got) != len(wantShapes) {
		t.Errorf("%d tensors, want %d: %v", len(got), len(wantShapes), slices.Sorted(func(y func(string) bool) {
			for k := range got {
				y(k)
			}
		}))
	}
	for n, s := range wantShapes {
		if !slices.Equal(got[n], s) {
			t.Errorf("%s: shape %v, want %v", n, got[n], s)
		}
	}

	q := tinyParams(t, false, dtypes.Float32)
	if err := model.ReadAdapters(dir, q); err != nil {
		t.Fatal(err)
	}
	if q.LoRA == nil || q.LoRA.Rank != 2 || !slices.Equal(q.LoRA.Targets, []string{"q", "v", "down"}) || !q.LoRA.TrainEmbed || !q.LoRA.TrainNorm {
		t.Errorf("read back adapters %+v", q.LoRA)
	}
	for _, n := range p.Trainable() {
		if !slices.Equal(host.ToFloat64(q.T[n]), host.ToFloat64(p.T[n])) {
			t.Errorf("%s differs after the round trip", n)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBadAdapters: adapter folders torus cannot use are refused, naming what is wrong.
func TestBadAdapters(t *testing.T) {
	l := model.LoRA{Rank: 2, Alpha: 4, Targets: []string{"q"}}
	good := func(t *testing.T) string {
		dir := t.TempDir()
		if err := model.WritePEFT(dir, loraParams(t, false, l), 0, "", "float32"); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	editConfig := func(key string, v any) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			path := filepath.Join(dir, model.AdapterConfigFile)
			var m map[string]any
			if err := json.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
				t.Fatal(err)
			}
			m[key] = v
			b, _ := json.Marshal(m)
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, dir string)
		want string
	}{
		{"unknown module", editConfig("target_modules", []string{"q_proj", "qkv_proj"}), `"qkv_proj" is not a projection`},
		{"not lora", editConfig("peft_type", "PREFIX_TUNING"), `peft_type "PREFIX_TUNING"`},
		{"rank 0", editConfig("r", 0), "rank must be >= 1"},
		{"dora", editConfig("use_dora", true), "use_dora"},
		{"modules_to_save", editConfig("modules_to_save", []string{"lm_head"}), `modules_to_save: "lm_head"`},
		{"more targets than tensors", editConfig("target_modules", []string{"q_proj", "k_proj"}), "missing tensor"},
		{"rank mismatch", editConfig("r", 3), "has shape [2 8], want [3 8]"},
		{"fewer targets than tensors", editConfig("target_modules", []string{"v_proj"}), "unexpected tensor"},
		{"no tensors", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, model.AdapterFile)) }, "adapter_model.safetensors"},
		{"not json", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, model.AdapterConfigFile), []byte("{r: 2"), 0o644)
		}, "adapter_config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := good(t)
			tc.edit(t, dir)
			err := model.ReadAdapters(dir, tinyParams(t, false, dtypes.Float32))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadAdapters: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
