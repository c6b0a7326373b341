package model_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
)

func tinyConfig(tied bool) model.Config {
	return model.Config{Vocab: 11, Dim: 8, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 12,
		RopeTheta: 10000, NormEps: 1e-5, TieEmbeddings: tied, MaxPositions: 64}
}

func tinyParams(t *testing.T, tied bool, dtype dtypes.DType) *model.Params {
	t.Helper()
	p, err := model.Init(tinyConfig(tied), dtype, 0.5, 1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHFRoundTripBitIdentical(t *testing.T) {
	for _, c := range []struct {
		name  string
		tied  bool
		dtype dtypes.DType
	}{{"float32", false, dtypes.Float32}, {"float32 tied", true, dtypes.Float32}, {"float64", false, dtypes.Float64}} {
		t.Run(c.name, func(t *testing.T) {
			p := tinyParams(t, c.tied, c.dtype)
			dir := filepath.Join(t.TempDir(), "hf")
			if err := model.SaveHF(dir, p, ""); err != nil {
				t.Fatal(err)
			}
			q, err := model.LoadHF(dir, c.dtype)
			if err != nil {
				t.Fatal(err)
			}
			if q.Config != p.Config {
				t.Errorf("config %+v, saved %+v", q.Config, p.Config)
			}
			if len(q.T) != len(p.T) || q.DType != c.dtype {
				t.Errorf("loaded %d %s tensors, saved %d", len(q.T), q.DType, len(p.T))
			}
			for _, n := range p.Names() {
				if !bytes.Equal(rawBytes(p.T[n]), rawBytes(q.T[n])) || !p.T[n].Shape().Equal(q.T[n].Shape()) {
					t.Errorf("%s differs after the round trip", n)
				}
			}
		})
	}
}

func TestHFBFloat16Export(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	dir := t.TempDir()
	if err := model.SaveHF(dir, p, "bfloat16"); err != nil {
		t.Fatal(err)
	}
	raw, meta, err := safetensors.ReadRaw(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" {
		t.Errorf(`metadata %v, want format "pt" (transformers requires it)`, meta)
	}
	if raw["model.embed_tokens.weight"].DType() != dtypes.BFloat16 {
		t.Errorf("stored as %s", raw["model.embed_tokens.weight"].DType())
	}
	for _, dt := range []dtypes.DType{dtypes.Float32, dtypes.Float64} {
		q, err := model.LoadHF(dir, dt)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range p.Names() {
			want, got := host.ToFloat64(p.T[n]), host.ToFloat64(q.T[n])
			for i := range want {
				// Round to nearest with an 8-bit significand: relative error <= 2^-8.
				if d := math.Abs(got[i] - want[i]); d > math.Abs(want[i])/256 {
					t.Fatalf("%s[%d] = %g, saved %g: beyond bfloat16 rounding", n, i, got[i], want[i])
				}
			}
		}
	}
}

func TestHFConfigJSON(t *testing.T) {
	c := tinyConfig(true)
	b, err := model.HFConfigJSON(c, "bfloat16")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"architectures": []any{"LlamaForCausalLM"}, "model_type": "llama",
		"vocab_size": 11.0, "hidden_size": 8.0, "intermediate_size": 12.0, "num_hidden_layers": 2.0,
		"num_attention_heads": 4.0, "num_key_value_heads": 2.0, "head_dim": 2.0, "hidden_act": "silu",
		"max_position_embeddings": 64.0, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": nil,
		"tie_word_embeddings": true, "attention_bias": false, "mlp_bias": false, "torch_dtype": "bfloat16",
		"bos_token_id": nil, "eos_token_id": nil, "initializer_range": 0.02,
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("config.json has no %q", k)
			continue
		}
		if gb, _ := json.Marshal(got); string(gb) != string(must(json.Marshal(v))) {
			t.Errorf("%s = %s, want %v", k, gb, v)
		}
	}
	// Written as transformers writes it: floats as Python prints them.
	for _, s := range []string{`"rope_theta": 10000.0`, `"rms_norm_eps": 1e-05`, `"initializer_range": 0.02`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("config.json lacks %s:\n%s", s, b)
		}
	}
	back, err := model.ReadHFConfig(writeFile(t, "config.json", b))
	if err != nil {
		t.Fatal(err)
	}
	if back != c {
		t.Errorf("read back %+v, want %+v", back, c)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

const minimalLlama = `{"model_type":"llama","vocab_size":32,"hidden_size":16,"intermediate_size":40,
"num_hidden_layers":1,"num_attention_heads":4`

func TestReadHFConfigDefaults(t *testing.T) {
	c, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(minimalLlama+`}`)))
	if err != nil {
		t.Fatal(err)
	}
	want := model.Config{Vocab: 32, Dim: 16, MLPDim: 40, Layers: 1, Heads: 4, KVHeads: 4,
		RopeTheta: 10000, NormEps: 1e-6, MaxPositions: 2048}
	if c != want || c.HeadDimension() != 4 {
		t.Errorf("got %+v, want %+v", c, want)
	}
	ok := []string{
		`,"model_type":"mistral","sliding_window":null,"head_dim":null}`,
		`,"rope_scaling":null,"hidden_act":"silu","attention_bias":false,"mlp_bias":false}`,
		`,"rope_parameters":{"rope_type":"default","rope_theta":500000.0}}`,
	}
	for _, extra := range ok {
		if _, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(minimalLlama+extra))); err != nil {
			t.Errorf("%s: %v", extra, err)
		}
	}
}

func TestReadHFConfigErrors(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"model_type":"gpt2"}`, `model_type "gpt2" not supported`},
		{`{"vocab_size":3}`, "model_type missing"},
		{minimalLlama + `,"hidden_act":"gelu"}`, `hidden_act "gelu"`},
		{minimalLlama + `,"model_type":"qwen2","use_sliding_window":true}`, "use_sliding_window true not supported"},
		{minimalLlama + `,"mlp_bias":true}`, "mlp_bias"},
		{minimalLlama + `,"rope_scaling":{"rope_type":"longrope","factor":8.0}}`, `rope_scaling type "longrope" not supported`},
		{minimalLlama + `,"model_type":"mistral","sliding_window":4096,"max_position_embeddings":32768}`, "sliding_window 4096"},
		{minimalLlama + `,"num_key_value_heads":3}`, "kv_heads (3) must divide heads (4)"},
		{`{"model_type":"llama","vocab_size":32}`, "hidden_size missing"},
		{minimalLlama + `,"head_dim":-2}`, "head_dim must be >= 1"},
		{`{"model_type":`, "unexpected end of JSON"},
	} {
		path := writeFile(t, "config.json", []byte(c.json))
		_, err := model.ReadHFConfig(path)
		if err == nil || !strings.HasPrefix(err.Error(), "model: "+path+": ") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.json, err, c.want)
		}
	}
}

// saveWith writes p's config and the given tensors as model.safetensors.
func saveWith(t *testing.T, p *model.Params, names []string, ts map[string]*tensors.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	if err := model.SaveHF(dir, p, ""); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), names, ts, nil, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadHFChecksTensors(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	names := p.Names()
	without := func(drop string) []string {
		var out []string
		for _, n := range names {
			if n != drop {
				out = append(out, n)
			}
		}
		return out
	}
	wrong := map[string]*tensors.Tensor{}
	for k, v := range p.T {
		wrong[k] = v
	}
	wrong["model.layers.1.self_attn.k_proj.weight"] = host.FromFloat64(dtypes.Float32, make([]float64, 40), 5, 8)
	wrong["model.layers.9.mlp.up_proj.weight"] = host.FromFloat64(dtypes.Float32, make([]float64, 1), 1)
	for _, c := range []struct {
		name  string
		names []string
		ts    map[string]*tensors.Tensor
		want  string
	}{
		{"missing", without("model.layers.1.mlp.down_proj.weight"), p.T, `missing tensor "model.layers.1.mlp.down_proj.weight" (config wants shape [8 12])`},
		{"missing head", without("lm_head.weight"), p.T, `missing tensor "lm_head.weight"`},
		{"wrong shape", names, wrong, `tensor "model.layers.1.self_attn.k_proj.weight" has shape [5 8], config wants [4 8]`},
		{"unexpected", append(without("model.layers.1.self_attn.k_proj.weight"), "model.layers.9.mlp.up_proj.weight"), wrong, `unexpected tensor "model.layers.9.mlp.up_proj.weight"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := model.LoadHF(saveWith(t, p, c.names, c.ts), dtypes.Float32)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("LoadHF error %v, want one containing %s", err, c.want)
			}
		})
	}
}

func TestLoadHFTiedIgnoresHead(t *testing.T) {
	p := tinyParams(t, true, dtypes.Float32)
	ts := map[string]*tensors.Tensor{"lm_head.weight": p.T["model.embed_tokens.weight"]}
	for k, v := range p.T {
		ts[k] = v
	}
	q, err := model.LoadHF(saveWith(t, p, append(p.Names(), "lm_head.weight"), ts), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := q.T["lm_head.weight"]; ok || len(q.T) != len(p.T) {
		t.Errorf("tied model loaded %d tensors (lm_head kept: %v)", len(q.T), ok)
	}
}

func TestLoadHFSharded(t *testing.T) {
	p := tinyParams(t, false, dtypes.Float32)
	dir := t.TempDir()
	if err := model.SaveHF(dir, p, ""); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "model.safetensors"))
	names := p.Names()
	shards := [][]string{names[:7], names[7:]}
	index := map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": map[string]string{}}
	for i, sh := range shards {
		file := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}[i]
		if err := safetensors.Write(filepath.Join(dir, file), sh, p.T, map[string]string{"format": "pt"}, "bfloat16"); err != nil {
			t.Fatal(err)
		}
		for _, n := range sh {
			index["weight_map"].(map[string]string)[n] = file
		}
	}
	writeIndex := func() {
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), must(json.Marshal(index)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeIndex()
	q, err := model.LoadHF(dir, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		want, got := host.ToFloat64(p.T[n]), host.ToFloat64(q.T[n])
		for i := range want {
			if math.Abs(got[i]-want[i]) > math.Abs(want[i])/256 {
				t.Fatalf("%s[%d] = %g, saved %g", n, i, got[i], want[i])
			}
		}
	}
	index["weight_map"].(map[string]string)[names[0]] = "../elsewhere.safetensors"
	writeIndex()
	if _, err := model.LoadHF(dir, dtypes.Float32); err == nil || !strings.Contains(err.Error(), "not a file name in the folder") {
		t.Errorf("shard outside the folder: %v", err)
	}
	index["weight_map"].(map[string]string)[names[0]] = "model-00002-of-00002.safetensors"
	writeIndex()
	if _, err := model.LoadHF(dir, dtypes.Float32); err == nil || !strings.Contains(err.Error(), "the index puts it in") {
		t.Errorf("index naming the wrong shard: %v", err)
	}
}

func TestReadHFConfigHeadDim(t *testing.T) {
	c, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(minimalLlama+`,"head_dim":8}`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.HeadDim != 8 || c.HeadDimension() != 8 {
		t.Errorf("head_dim 8 read as %d (dimension %d)", c.HeadDim, c.HeadDimension())
	}
	if c, err = model.ReadHFConfig(writeFile(t, "config.json", []byte(minimalLlama+`,"head_dim":4}`))); err != nil || c.HeadDim != 0 {
		t.Errorf("head_dim equal to hidden/heads read as %d, %v; want 0 (the default)", c.HeadDim, err)
	}
}

// A config.json as published with TinyLlama-1.1B (transformers 4.35).
const tinyLlamaConfig = `{
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 5632,
  "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 32,
  "num_hidden_layers": 22, "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 10000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.35.0", "use_cache": true, "vocab_size": 32000
}`

func TestReadHFConfigTinyLlama(t *testing.T) {
	c, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(tinyLlamaConfig)))
	if err != nil {
		t.Fatal(err)
	}
	want := model.Config{Vocab: 32000, Dim: 2048, Layers: 22, Heads: 32, KVHeads: 4, MLPDim: 5632,
		RopeTheta: 10000, NormEps: 1e-5, MaxPositions: 2048}
	if c != want || c.HeadDimension() != 64 {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestLoadHFNoWeights(t *testing.T) {
	dir := t.TempDir()
	b, err := model.HFConfigJSON(tinyConfig(false), "float32")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := model.LoadHF(dir, dtypes.Float32); err == nil || !strings.Contains(err.Error(), "neither model.safetensors nor") {
		t.Errorf("folder without weights: %v", err)
	}
	if _, err := model.LoadHF(dir, dtypes.BFloat16); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("LoadHF as bfloat16: %v", err)
	}
}
