package model

// The Hugging Face architectures beyond Llama: their config classes' defaults,
// and Qwen2's config.json.

import (
	"encoding/json"
	"fmt"
)

// hfDefaults are a model_type's config class defaults that Config has fields for.
type hfDefaults struct {
	maxPositions  int
	kvHeads       int  // 0: num_attention_heads
	slidingWindow int  // when the key is absent; 0: none
	qkvBias       bool // fixed by the modeling code, not the config
}

// hfArchitectures are the model types ReadHFConfig reads, with their defaults:
// MistralConfig's sliding_window is 4096 unless the file says null.
var hfArchitectures = map[string]hfDefaults{
	"llama":   {maxPositions: 2048},
	"mistral": {maxPositions: 4096 * 32, slidingWindow: 4096},
	"qwen2":   {maxPositions: 32768, kvHeads: 32, qkvBias: true},
}

// hfSlidingWindow reads sliding_window: absent is the config class's default
// (def), null none (0).
func hfSlidingWindow(raw json.RawMessage, def int) (int, error) {
	if raw == nil {
		return def, nil
	}
	var w *int
	if err := json.Unmarshal(raw, &w); err != nil {
		return 0, fmt.Errorf("sliding_window: want null or a number of positions: %w", err)
	}
	if w == nil {
		return 0, nil
	}
	return *w, nil
}

// hfIsQwen2 reports whether c is exported as a Qwen2ForCausalLM: q, k and v
// biases without an output projection bias, which LlamaConfig cannot say.
func hfIsQwen2(c Config) bool { return c.QKVBias && !c.OBias }

// hfQwen2ConfigJSON is hfConfigJSON for a Qwen2 model: Qwen2Config's fields, no
// sliding window. head_dim is written only when it is not hidden_size/heads
// (Qwen2Config has none; transformers releases that read one take it).
func hfQwen2ConfigJSON(c Config, torchDType string, bos, eos *int) ([]byte, error) {
	m := map[string]any{
		"architectures":           []string{"Qwen2ForCausalLM"},
		"model_type":              "qwen2",
		"vocab_size":              c.Vocab,
		"hidden_size":             c.Dim,
		"intermediate_size":       c.MLPDim,
		"num_hidden_layers":       c.Layers,
		"num_attention_heads":     c.Heads,
		"num_key_value_heads":     c.KVHeads,
		"hidden_act":              "silu",
		"max_position_embeddings": hfMaxPositions(c),
		"rms_norm_eps":            pyFloat(c.NormEps),
		"rope_theta":              pyFloat(c.RopeTheta),
		"rope_scaling":            hfRopeScaling(c),
		"tie_word_embeddings":     c.TieEmbeddings,
		"use_sliding_window":      false,
		"sliding_window":          nil,      // what Qwen2Config keeps without use_sliding_window
		"max_window_layers":       c.Layers, // no layer slides whichever way a release reads it
		"attention_dropout":       pyFloat(0),
		"use_cache":               true,
		"torch_dtype":             torchDType,
		"bos_token_id":            bos,
		"eos_token_id":            eos,
		"initializer_range":       pyFloat(0.02),
		"transformers_version":    hfTransformersVersion,
	}
	if c.HeadDim > 0 {
		m["head_dim"] = c.HeadDim
	}
	out, err := pyJSON(m)
	if err != nil {
		return nil, fmt.Errorf("model: config.json: %w", err)
	}
	return out, nil
}
