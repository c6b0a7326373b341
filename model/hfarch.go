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

// hfQwen2Config makes the shared config.json fields Qwen2Config's: no sliding
// window, and head_dim only when it is not hidden_size/heads (Qwen2Config has
// none; transformers releases that read one take it).
func hfQwen2Config(c Config, m map[string]any) {
	m["architectures"], m["model_type"] = []string{"Qwen2ForCausalLM"}, "qwen2"
	m["use_sliding_window"] = false
	m["sliding_window"] = nil         // what Qwen2Config keeps without use_sliding_window
	m["max_window_layers"] = c.Layers // no layer slides whichever way a release reads it
	if c.HeadDim > 0 {
		m["head_dim"] = c.HeadDim
	}
}
