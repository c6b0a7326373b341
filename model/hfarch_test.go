package model_test

// Reading the architectures beyond Llama (Qwen2, Mistral, Llama's
// attention_bias) from config.json, and sharded folders.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/model"
	"github.com/torusml/torus/safetensors"
)

// qwen25Config is shaped as Qwen2.5-0.5B's published config.json: a sliding
// window that use_sliding_window false turns off, rope_theta 1e6, tied embedding.
const qwen25Config = `{
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21,
  "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
  "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936
}`

// minimalOf is a config.json of the given model_type with the required fields and extra ones.
func minimalOf(modelType, extra string) string {
	return `{"model_type":"` + modelType + `","vocab_size":32,"hidden_size":16,"intermediate_size":40,` +
		`"num_hidden_layers":1,"num_attention_heads":4` + extra + `}`
}

func TestReadHFConfigArchitectures(t *testing.T) {
	small := model.Config{Vocab: 32, Dim: 16, MLPDim: 40, Layers: 1, Heads: 4, KVHeads: 4, RopeTheta: 10000, NormEps: 1e-6}
	with := func(f func(*model.Config)) model.Config {
		c := small
		f(&c)
		return c
	}
	for _, tc := range []struct {
		name, json string
		want       model.Config
	}{
		{"qwen2.5-0.5b", qwen25Config, model.Config{Vocab: 151936, Dim: 896, Layers: 24, Heads: 14, KVHeads: 2, MLPDim: 4864,
			RopeTheta: 1e6, NormEps: 1e-6, TieEmbeddings: true, MaxPositions: 32768, QKVBias: true}},
		{"qwen2 defaults", minimalOf("qwen2", `,"num_key_value_heads":2`), with(func(c *model.Config) {
			c.KVHeads, c.MaxPositions, c.QKVBias = 2, 32768, true // Qwen2Config's max_position_embeddings
		})},
		{"qwen2 window unused", minimalOf("qwen2", `,"num_key_value_heads":4,"use_sliding_window":false,"sliding_window":64,"max_window_layers":0`),
			with(func(c *model.Config) { c.MaxPositions, c.QKVBias = 32768, true })},
		{"qwen2 transformers v5", minimalOf("qwen2", `,"num_key_value_heads":4,"layer_types":["full_attention"],`+
			`"rope_parameters":{"rope_type":"default","rope_theta":1000000.0},"sliding_window":null`),
			with(func(c *model.Config) { c.MaxPositions, c.QKVBias, c.RopeTheta = 32768, true, 1e6 })},
		{"qwen2 ignores attention_bias", minimalOf("qwen2", `,"num_key_value_heads":4,"attention_bias":false`),
			with(func(c *model.Config) { c.MaxPositions, c.QKVBias = 32768, true })},
		{"llama attention_bias", minimalOf("llama", `,"attention_bias":true`),
			with(func(c *model.Config) { c.MaxPositions, c.QKVBias, c.OBias = 2048, true, true })},
		{"mistral sliding_window null", minimalOf("mistral", `,"sliding_window":null`),
			with(func(c *model.Config) { c.MaxPositions = 131072 })}, // MistralConfig's default
		{"mistral window over every position", minimalOf("mistral", `,"sliding_window":4096,"max_position_embeddings":4096`),
			with(func(c *model.Config) { c.MaxPositions = 4096 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := model.ReadHFConfig(writeFile(t, "config.json", []byte(tc.json)))
			if err != nil {
				t.Fatal(err)
			}
			if c != tc.want {
				t.Errorf("read %+v, want %+v", c, tc.want)
			}
		})
	}
}

func TestReadHFConfigArchitectureErrors(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"qwen2 use_sliding_window", minimalOf("qwen2", `,"num_key_value_heads":4,"use_sliding_window":true,"sliding_window":8`),
			"use_sliding_window true not supported (torus attends over all positions)"},
		{"qwen2 sliding layer", minimalOf("qwen2", `,"num_key_value_heads":4,"layer_types":["full_attention","sliding_attention"]`),
			`layer_types[1] "sliding_attention" not supported`},
		// Qwen2Config's num_key_value_heads is 32 when the file has none.
		{"qwen2 default kv heads", minimalOf("qwen2", ""), "kv_heads (32) must divide heads (4)"},
		{"mistral window", minimalOf("mistral", `,"sliding_window":4096,"max_position_embeddings":32768`),
			"sliding_window 4096 not supported (attention over all 32768 positions only"},
		// MistralConfig slides over 4096 positions unless the file says null.
		{"mistral default window", minimalOf("mistral", ""), "sliding_window 4096 not supported (attention over all 131072 positions only; null or at least max_position_embeddings loads): the file has none, and 4096 is MistralConfig's default"},
		{"sliding_window not a number", minimalOf("mistral", `,"sliding_window":"4096"`), "sliding_window: want null or a number"},
		{"llama mlp_bias", minimalOf("llama", `,"attention_bias":true,"mlp_bias":true`), "mlp_bias true not supported"},
		{"gemma", minimalOf("gemma", ""), `model_type "gemma" not supported (llama, qwen2, or mistral without sliding window)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "config.json", []byte(tc.json))
			_, err := model.ReadHFConfig(path)
			if err == nil || !strings.HasPrefix(err.Error(), "model: "+path+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	c := tinyConfig(false)
	c.OBias = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "o_bias needs qkv_bias") {
		t.Errorf("o bias alone: %v", err)
	}
}

// shardedFolder writes p's tensors as save_pretrained shards them: two
// model-0000i-of-00002.safetensors (in dtype) and the index; skip leaves a
// tensor out of its shard while the index still lists it.
func shardedFolder(t *testing.T, p *model.Params, dtype, skip string) string {
	t.Helper()
	dir := t.TempDir()
	hfConfigFile(t, dir, p.Config)
	names := p.Names()
	files := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
	weightMap := map[string]string{}
	for i, part := range [][]string{names[:len(names)/2], names[len(names)/2:]} {
		for _, n := range part {
			weightMap[n] = files[i]
		}
		part = slices.DeleteFunc(slices.Clone(part), func(n string) bool { return n == skip })
		if err := safetensors.Write(filepath.Join(dir, files[i]), part, p.T, map[string]string{"format": "pt"}, dtype); err != nil {
			t.Fatal(err)
		}
	}
	index := map[string]any{"metadata": map[string]any{"total_size": paramBytes(p, 2)}, "weight_map": weightMap}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), must(json.Marshal(index)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoadHFShardedEqualsOneFile: two bfloat16 shards and their index load
// bitwise as the same tensors in one model.safetensors do; a missing shard or
// a tensor its shard lacks is an error naming it.
func TestLoadHFShardedEqualsOneFile(t *testing.T) {
	p := randomParams(t, biasConfigs[0].cfg, dtypes.Float32, 8)
	one, err := model.LoadHF(biasFolder(t, p, "bfloat16"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	sharded, err := model.LoadHF(shardedFolder(t, p, "bfloat16", ""), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if sharded.Config != one.Config || len(sharded.T) != len(one.T) {
		t.Errorf("sharded: config %+v (%d tensors), one file %+v (%d)", sharded.Config, len(sharded.T), one.Config, len(one.T))
	}
	for _, n := range p.Names() {
		if !bytes.Equal(rawBytes(sharded.T[n]), rawBytes(one.T[n])) {
			t.Errorf("%s: sharded and one-file folders differ", n)
		}
	}

	bias := model.LayerParam(1, model.KProjBias) // in the second shard
	for _, tc := range []struct {
		name  string
		dir   func() string
		wants []string
	}{
		{"missing shard", func() string {
			dir := shardedFolder(t, p, "float32", "")
			if err := os.Remove(filepath.Join(dir, "model-00002-of-00002.safetensors")); err != nil {
				t.Fatal(err)
			}
			return dir
		}, []string{"model.safetensors.index.json lists shard model-00002-of-00002.safetensors, which is missing"}},
		{"tensor missing from its shard", func() string { return shardedFolder(t, p, "float32", bias) },
			[]string{fmt.Sprintf("the index puts tensor %q in model-00002-of-00002.safetensors, which does not hold it", bias)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir()
			_, err := model.LoadHF(dir, dtypes.Float32)
			for _, want := range tc.wants {
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), dir) {
					t.Errorf("error %v, want one naming %s and containing %q", err, dir, want)
				}
			}
		})
	}
}
