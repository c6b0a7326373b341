package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gomlx/compute/dtypes"
)

// Config is the architecture of a LLaMA-family decoder. Field meanings follow
// Hugging Face's LlamaConfig; the json names are those of config.json.
//
// The attention biases cover the other architectures torus computes: Qwen2
// (Qwen2.5) is a Llama whose q, k and v projections have biases (QKVBias), and
// LlamaConfig's attention_bias gives q, k, v and o biases (QKVBias and OBias).
type Config struct {
	Vocab         int     // vocab_size
	Dim           int     // hidden_size
	Layers        int     // num_hidden_layers
	Heads         int     // num_attention_heads
	KVHeads       int     // num_key_value_heads
	HeadDim       int     // head_dim (Dim/Heads when zero)
	MLPDim        int     // intermediate_size
	RopeTheta     float64 // rope_theta
	NormEps       float64 // rms_norm_eps
	TieEmbeddings bool    // tie_word_embeddings
	MaxPositions  int     // max_position_embeddings (informational; rope_scaling's original context when it has none)

	RopeScaling RopeScaling // rope_scaling; the zero value is plain RoPE

	// QKVBias: the q, k and v projections add a bias (Qwen2's, or attention_bias).
	// OBias: the output projection does too (attention_bias; needs QKVBias).
	// A config.json with QKVBias alone is model_type qwen2, with both llama.
	QKVBias, OBias bool

	// Compute is not the architecture but how the pieces compute: bfloat16 for
	// mixed precision (matmuls and attention in bf16 over float32 weights, with
	// norms, softmax statistics, the loss and every gradient in float32); zero for
	// everything in the weights' dtype. Never written to config.json.
	Compute dtypes.DType
}

// HeadDimension returns the per-head width: HeadDim, or Dim/Heads when unset.
func (c Config) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.Heads == 0 {
		return 0
	}
	return c.Dim / c.Heads
}

// Validate reports the first inconsistency in the architecture, naming the field.
func (c Config) Validate() error {
	for _, l := range []struct {
		key      string
		got, max int
	}{{"vocab", c.Vocab, MaxVocab}, {"dim", c.Dim, MaxDim}, {"layers", c.Layers, MaxLayers}, {"heads", c.Heads, MaxHeads},
		{"kv_heads", c.KVHeads, MaxHeads}, {"head_dim", c.HeadDim, MaxHeadDim}, {"mlp_dim", c.MLPDim, MaxMLPDim}} {
		if l.got > l.max {
			return fmt.Errorf("model: %s %d is over the limit of %d", l.key, l.got, l.max)
		}
	}
	switch {
	case c.Vocab < 2:
		return fmt.Errorf("model: vocab must be >= 2, got %d", c.Vocab)
	case c.Dim < 1:
		return fmt.Errorf("model: dim must be >= 1, got %d", c.Dim)
	case c.Layers < 1:
		return fmt.Errorf("model: layers must be >= 1, got %d", c.Layers)
	case c.Heads < 1:
		return fmt.Errorf("model: heads must be >= 1, got %d", c.Heads)
	case c.KVHeads < 1:
		return fmt.Errorf("model: kv_heads must be >= 1, got %d", c.KVHeads)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("model: kv_heads (%d) must divide heads (%d)", c.KVHeads, c.Heads)
	case c.HeadDim < 0:
		return fmt.Errorf("model: head_dim must be >= 0 (0: dim/heads), got %d", c.HeadDim)
	case c.HeadDim == 0 && c.Dim%c.Heads != 0:
		return fmt.Errorf("model: heads (%d) must divide dim (%d) when head_dim is unset", c.Heads, c.Dim)
	case c.HeadDimension()%2 != 0:
		return fmt.Errorf("model: head dimension must be even for rotary embedding, got %d", c.HeadDimension())
	case c.MLPDim < 1:
		return fmt.Errorf("model: mlp_dim must be >= 1, got %d", c.MLPDim)
	case c.RopeTheta <= 0:
		return fmt.Errorf("model: rope_theta must be > 0, got %g", c.RopeTheta)
	case c.NormEps <= 0:
		return fmt.Errorf("model: norm_eps must be > 0, got %g", c.NormEps)
	case c.OBias && !c.QKVBias:
		return fmt.Errorf("model: o_bias needs qkv_bias (no Hugging Face architecture has an output projection bias alone)")
	}
	return c.validateRopeScaling()
}

// Limits on a model's sizes, far beyond any released model's (Llama 3.1 405B:
// 126 layers, hidden 16384, MLP 53248, vocabulary 128256): a typo in a recipe
// or a hostile config.json is refused before anything is allocated for it.
const (
	MaxVocab   = 1 << 23
	MaxDim     = 1 << 17
	MaxLayers  = 1024
	MaxHeads   = 4096
	MaxHeadDim = 4096
	MaxMLPDim  = 1 << 20
)

// ParamNames lists every parameter by its Hugging Face name, in a fixed order
// (embedding, layers in order, final norm, head).
func (c Config) ParamNames() []string {
	names := []string{"model.embed_tokens.weight"}
	suffixes := c.layerSuffixes()
	for i := range c.Layers {
		for _, n := range suffixes {
			names = append(names, LayerParam(i, n))
		}
	}
	names = append(names, "model.norm.weight")
	if !c.TieEmbeddings {
		names = append(names, "lm_head.weight")
	}
	return names
}

// Per-layer parameter suffixes, in the order the graph pieces take them.
const (
	InputNorm = "input_layernorm.weight"
	QProj     = "self_attn.q_proj.weight"
	KProj     = "self_attn.k_proj.weight"
	VProj     = "self_attn.v_proj.weight"
	OProj     = "self_attn.o_proj.weight"
	PostNorm  = "post_attention_layernorm.weight"
	GateProj  = "mlp.gate_proj.weight"
	UpProj    = "mlp.up_proj.weight"
	DownProj  = "mlp.down_proj.weight"

	// The attention biases, with Config.QKVBias and Config.OBias.
	QProjBias = "self_attn.q_proj.bias"
	KProjBias = "self_attn.k_proj.bias"
	VProjBias = "self_attn.v_proj.bias"
	OProjBias = "self_attn.o_proj.bias"
)

// layerSuffixes are a layer's parameter suffixes in the order the graph pieces
// take them, each bias after its projection.
func (c Config) layerSuffixes() []string {
	s := []string{InputNorm, QProj, KProj, VProj, OProj, PostNorm, GateProj, UpProj, DownProj}
	switch {
	case c.OBias:
		s = []string{InputNorm, QProj, QProjBias, KProj, KProjBias, VProj, VProjBias, OProj, OProjBias, PostNorm, GateProj, UpProj, DownProj}
	case c.QKVBias:
		s = []string{InputNorm, QProj, QProjBias, KProj, KProjBias, VProj, VProjBias, OProj, PostNorm, GateProj, UpProj, DownProj}
	}
	return s
}

// LayerParam is the Hugging Face name of a layer's parameter.
func LayerParam(layer int, suffix string) string {
	return fmt.Sprintf("model.layers.%d.%s", layer, suffix)
}

// ParamShape is the shape of a named parameter ([out, in] for projections).
func (c Config) ParamShape(name string) ([]int, error) {
	d, hd := c.Dim, c.HeadDimension()
	switch name {
	case "model.embed_tokens.weight", "lm_head.weight":
		return []int{c.Vocab, d}, nil
	case "model.norm.weight":
		return []int{d}, nil
	}
	var layer int
	var suffix string
	if _, err := fmt.Sscanf(name, "model.layers.%d.", &layer); err != nil || layer < 0 || layer >= c.Layers {
		return nil, fmt.Errorf("model: unknown parameter %q", name)
	}
	suffix = name[len(fmt.Sprintf("model.layers.%d.", layer)):]
	if !slices.Contains(c.layerSuffixes(), suffix) {
		return nil, fmt.Errorf("model: unknown parameter %q", name)
	}
	switch suffix {
	case InputNorm, PostNorm:
		return []int{d}, nil
	case QProj:
		return []int{c.Heads * hd, d}, nil
	case KProj, VProj:
		return []int{c.KVHeads * hd, d}, nil
	case OProj:
		return []int{d, c.Heads * hd}, nil
	case QProjBias:
		return []int{c.Heads * hd}, nil
	case KProjBias, VProjBias:
		return []int{c.KVHeads * hd}, nil
	case OProjBias:
		return []int{d}, nil
	case GateProj, UpProj:
		return []int{c.MLPDim, d}, nil
	case DownProj:
		return []int{d, c.MLPDim}, nil
	}
	return nil, fmt.Errorf("model: unknown parameter %q", name)
}

// IsNorm reports whether a parameter is a norm weight (no weight decay by default).
func IsNorm(name string) bool {
	return strings.HasSuffix(name, "layernorm.weight") || name == "model.norm.weight"
}

// IsBias reports whether a parameter is a bias (a vector added after a projection).
func IsBias(name string) bool { return strings.HasSuffix(name, ".bias") }

// IsEmbedding reports whether a parameter is the token embedding.
func IsEmbedding(name string) bool { return name == "model.embed_tokens.weight" }
