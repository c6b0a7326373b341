package model

// Hugging Face model folders: config.json (a LlamaConfig, MistralConfig or
// Qwen2Config) beside model.safetensors, or beside model.safetensors.index.json
// and the shard files it names (save_pretrained's sharded checkpoints).

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/safetensors"
)

const (
	hfConfigFile  = "config.json"
	hfWeightsFile = "model.safetensors"
	hfIndexFile   = "model.safetensors.index.json"
)

// maxConfigBytes bounds a config.json read whole (real ones are a few KiB).
const maxConfigBytes = 1 << 20

// Buffers older Llama checkpoints carry; they are derived from rope_theta, not parameters.
var hfIgnoredTensor = regexp.MustCompile(`^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$`)

// LoadHF reads DIR/config.json (see ReadHFConfig) and DIR/model.safetensors (or
// sharded: DIR/model.safetensors.index.json + the shard files) into Params of the
// given dtype (Float32 or Float64; stored bfloat16 or float16 converts), checking
// every expected parameter is present with the right shape and no unexpected ones,
// and that the index and the shards agree (every shard there, every tensor where the
// index puts it). A tied model's lm_head.weight, if present, is ignored. Shapes are
// checked from the headers before any tensor data is read, then each tensor is
// read from its file in turn.
func LoadHF(dir string, dtype dtypes.DType) (*Params, error) { return LoadHFKeeping(dir, dtype, nil) }

// LoadHFKeeping is LoadHF keeping the tensors keep names in their stored dtype
// when that is bfloat16 or float16 (converting them would only double their
// memory: a LoRA run's frozen base, see LoRA.KeepsStored). p.DType stays dtype,
// the dtype of everything else.
func LoadHFKeeping(dir string, dtype dtypes.DType, keep func(name string) bool) (*Params, error) {
	if dtype != dtypes.Float32 && dtype != dtypes.Float64 {
		return nil, fmt.Errorf("model: %s: dtype %s not supported (float32 or float64)", dir, dtype)
	}
	cfg, err := ReadHFConfig(filepath.Join(dir, hfConfigFile))
	if err != nil {
		return nil, err
	}
	shards, listed, err := hfShards(dir)
	if err != nil {
		return nil, err
	}
	files := make([]*safetensors.File, 0, len(shards))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	want := map[string]bool{}
	for _, n := range cfg.ParamNames() {
		want[n] = true
	}
	type loc struct {
		f *safetensors.File
		e safetensors.Entry
	}
	found := map[string]loc{}
	for _, shard := range shards {
		f, err := safetensors.Open(filepath.Join(dir, shard))
		if listed != nil && errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("model: %s: %s lists shard %s, which is missing", dir, hfIndexFile, shard)
		} else if err != nil {
			return nil, err
		}
		files = append(files, f)
		for _, e := range f.Entries() {
			if prev, ok := found[e.Name]; ok {
				return nil, fmt.Errorf("model: %s: tensor %q is in both %s and %s", dir, e.Name, prev.f.Path(), f.Path())
			}
			if listed != nil && listed[e.Name] != "" && listed[e.Name] != shard {
				return nil, fmt.Errorf("model: %s: tensor %q is in %s but the index puts it in %s", dir, e.Name, shard, listed[e.Name])
			}
			found[e.Name] = loc{f, e}
			if !want[e.Name] {
				if (cfg.TieEmbeddings && e.Name == "lm_head.weight") || hfIgnoredTensor.MatchString(e.Name) {
					continue
				}
				return nil, fmt.Errorf("model: %s: unexpected tensor %q (shape %v) for this config", f.Path(), e.Name, e.Shape)
			}
			shape, err := cfg.ParamShape(e.Name)
			if err != nil {
				return nil, fmt.Errorf("model: %s: %w", f.Path(), err)
			}
			if !slices.Equal(e.Shape, shape) {
				return nil, fmt.Errorf("model: %s: tensor %q has shape %v, config wants %v", f.Path(), e.Name, e.Shape, shape)
			}
			if !safetensors.IsFloat(e.DType) {
				return nil, fmt.Errorf("model: %s: tensor %q is %s, want a float dtype", f.Path(), e.Name, e.DType)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		if _, ok := found[name]; !ok {
			return nil, fmt.Errorf("model: %s: the index puts tensor %q in %s, which does not hold it", dir, name, listed[name])
		}
	}
	for _, name := range cfg.ParamNames() {
		if _, ok := found[name]; !ok {
			shape, _ := cfg.ParamShape(name)
			return nil, fmt.Errorf("model: %s: missing tensor %q (config wants shape %v)", dir, name, shape)
		}
	}
	p := &Params{Config: cfg, DType: dtype, T: make(map[string]*tensors.Tensor, len(want))}
	for _, name := range cfg.ParamNames() {
		l, to := found[name], dtype
		if keep != nil && keep(name) && (l.e.DType == dtypes.BFloat16 || l.e.DType == dtypes.Float16) {
			to = l.e.DType
		}
		if p.T[name], err = l.f.Read(l.e, to); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// hfShards names the weight files of dir: model.safetensors, or the shards of the
// index (listed maps each tensor to its shard; nil without an index).
func hfShards(dir string) (shards []string, listed map[string]string, err error) {
	if _, err := os.Stat(filepath.Join(dir, hfWeightsFile)); err == nil {
		return []string{hfWeightsFile}, nil, nil
	}
	path := filepath.Join(dir, hfIndexFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("model: %s: neither %s nor %s found", dir, hfWeightsFile, hfIndexFile)
	} else if err != nil {
		return nil, nil, fmt.Errorf("model: %w", err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("model: %s: weight_map is empty", path)
	}
	seen := map[string]bool{}
	for name, shard := range index.WeightMap {
		if shard == "" || shard == "." || shard == ".." || filepath.Base(shard) != shard || strings.ContainsAny(shard, `/\`) {
			return nil, nil, fmt.Errorf("model: %s: tensor %q: shard %q is not a file name in the folder", path, name, shard)
		}
		if !seen[shard] {
			seen[shard] = true
			shards = append(shards, shard)
		}
	}
	sort.Strings(shards)
	return shards, index.WeightMap, nil
}

// SaveHF writes p into dir as a Hugging Face model folder with ExportHF's defaults
// (dtype "" = the params' dtype, or float32|bfloat16|float16|float64).
func SaveHF(dir string, p *Params, dtype string) error {
	return ExportHF(dir, p, HFExport{DType: dtype})
}

// hfConfigIn is what ReadHFConfig takes from config.json; pointers tell missing from zero.
type hfConfigIn struct {
	ModelType             *string         `json:"model_type"`
	VocabSize             *int            `json:"vocab_size"`
	HiddenSize            *int            `json:"hidden_size"`
	IntermediateSize      *int            `json:"intermediate_size"`
	NumHiddenLayers       *int            `json:"num_hidden_layers"`
	NumAttentionHeads     *int            `json:"num_attention_heads"`
	NumKeyValueHeads      *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	HiddenAct             *string         `json:"hidden_act"`
	MaxPositionEmbeddings *int            `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	RopeParameters        json.RawMessage `json:"rope_parameters"` // transformers v5 spelling
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         *bool           `json:"attention_bias"`
	MLPBias               *bool           `json:"mlp_bias"`
	SlidingWindow         json.RawMessage `json:"sliding_window"`     // absent, null or a number
	UseSlidingWindow      *bool           `json:"use_sliding_window"` // Qwen2Config
	LayerTypes            []string        `json:"layer_types"`        // transformers v5: per layer, full_attention or sliding_attention
}

// ReadHFConfig reads a Hugging Face config.json, validated: a LlamaConfig
// (attention_bias gives q, k, v and o biases), a MistralConfig without sliding
// window (sliding_window null, or at least max_position_embeddings), or a
// Qwen2Config with use_sliding_window false (q, k and v biases). Missing optional
// fields take LlamaConfig's defaults, and Qwen2Config's where they differ.
func ReadHFConfig(path string) (Config, error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxConfigBytes {
		return Config{}, fmt.Errorf("model: %s: %d bytes, over the %d-byte limit of a config.json", path, fi.Size(), maxConfigBytes)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("model: %w", err)
	}
	var in hfConfigIn
	if err := json.Unmarshal(raw, &in); err != nil {
		return Config{}, fmt.Errorf("model: %s: %w", path, err)
	}
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("model: %s: "+format, append([]any{path}, args...)...)
	}
	if in.ModelType == nil {
		return fail("model_type missing")
	}
	arch := *in.ModelType
	def, ok := hfArchitectures[arch]
	switch {
	case !ok:
		return fail("model_type %q not supported (llama, qwen2, or mistral without sliding window)", arch)
	case in.HiddenAct != nil && *in.HiddenAct != "silu" && *in.HiddenAct != "swish":
		return fail("hidden_act %q not supported (silu)", *in.HiddenAct)
	case in.MLPBias != nil && *in.MLPBias:
		return fail("mlp_bias true not supported")
	case in.UseSlidingWindow != nil && *in.UseSlidingWindow:
		return fail("use_sliding_window true not supported (torus attends over all positions); set it false to load the model with full attention")
	}
	for i, lt := range in.LayerTypes {
		if lt != "full_attention" {
			return fail("layer_types[%d] %q not supported (torus attends over all positions: full_attention only)", i, lt)
		}
	}
	for _, f := range []struct {
		key      string
		v        *int
		optional bool
		max      int
	}{{"vocab_size", in.VocabSize, false, MaxVocab}, {"hidden_size", in.HiddenSize, false, MaxDim},
		{"intermediate_size", in.IntermediateSize, false, MaxMLPDim}, {"num_hidden_layers", in.NumHiddenLayers, false, MaxLayers},
		{"num_attention_heads", in.NumAttentionHeads, false, MaxHeads}, {"num_key_value_heads", in.NumKeyValueHeads, true, MaxHeads},
		{"head_dim", in.HeadDim, true, MaxHeadDim}} {
		switch {
		case f.v == nil && !f.optional:
			return fail("%s missing", f.key)
		case f.v != nil && *f.v > f.max:
			return fail("%s %d is over the limit of %d (larger than any model torus can hold)", f.key, *f.v, f.max)
		}
	}
	c := Config{
		Vocab: *in.VocabSize, Dim: *in.HiddenSize, MLPDim: *in.IntermediateSize,
		Layers: *in.NumHiddenLayers, Heads: *in.NumAttentionHeads, KVHeads: *in.NumAttentionHeads,
		RopeTheta: 10000, NormEps: 1e-6, MaxPositions: def.maxPositions, // the config classes' defaults
		QKVBias: def.qkvBias,
	}
	// Only LlamaConfig has attention_bias; Mistral's and Qwen2's modeling code
	// fixes the biases whatever the file says, and so does this.
	if arch == "llama" && in.AttentionBias != nil && *in.AttentionBias {
		c.QKVBias, c.OBias = true, true
	}
	if def.kvHeads > 0 {
		c.KVHeads = def.kvHeads
	}
	if in.NumKeyValueHeads != nil {
		c.KVHeads = *in.NumKeyValueHeads
	}
	// Config keeps HeadDim at zero when it is the default Dim/Heads, so that a
	// config survives SaveHF/LoadHF unchanged.
	if hd := in.HeadDim; hd != nil && *hd < 1 {
		return fail("head_dim must be >= 1, got %d", *hd)
	} else if hd != nil && (c.Heads <= 0 || c.Dim%c.Heads != 0 || *hd != c.Dim/c.Heads) {
		c.HeadDim = *hd
	}
	if in.MaxPositionEmbeddings != nil {
		c.MaxPositions = *in.MaxPositionEmbeddings
	}
	if in.RMSNormEps != nil {
		c.NormEps = *in.RMSNormEps
	}
	if in.RopeTheta != nil {
		c.RopeTheta = *in.RopeTheta
	}
	if in.TieWordEmbeddings != nil {
		c.TieEmbeddings = *in.TieWordEmbeddings
	}
	// Qwen2 slides only with use_sliding_window (refused above), whatever sliding_window says.
	if window, err := hfSlidingWindow(in.SlidingWindow, def.slidingWindow); err != nil {
		return fail("%w", err)
	} else if arch != "qwen2" && window > 0 && window < c.MaxPositions {
		absent := ""
		if in.SlidingWindow == nil {
			absent = fmt.Sprintf(": the file has none, and %d is %sConfig's default", window, strings.ToUpper(arch[:1])+arch[1:])
		}
		return fail("sliding_window %d not supported (attention over all %d positions only; null or at least max_position_embeddings loads)%s",
			window, c.MaxPositions, absent)
	}
	var scalings [2]RopeScaling
	for i, rope := range []struct {
		key string
		raw json.RawMessage
	}{{"rope_scaling", in.RopeScaling}, {"rope_parameters", in.RopeParameters}} {
		s, theta, err := readHFRope(rope.key, rope.raw, c.MaxPositions)
		if err != nil {
			return fail("%w", err)
		}
		if theta > 0 {
			c.RopeTheta = theta
		}
		scalings[i] = s
	}
	switch a, b := scalings[0], scalings[1]; {
	case a.Enabled() && b.Enabled() && a != b:
		return fail("rope_scaling %+v and rope_parameters %+v disagree", a, b)
	case a.Enabled():
		c.RopeScaling = a
	default:
		c.RopeScaling = b
	}
	if err := c.Validate(); err != nil {
		return fail("%s", strings.TrimPrefix(err.Error(), "model: "))
	}
	return c, nil
}

// HFConfigJSON renders c as a Hugging Face config.json, formatted as transformers
// writes it (keys sorted, two-space indent, floats as Python prints them): a
// Qwen2ForCausalLM's when c has q, k and v biases alone, else a LlamaForCausalLM's
// (attention_bias true with OBias). bos/eos token ids are null: Config does not
// know the tokenizer.
func HFConfigJSON(c Config, torchDType string) ([]byte, error) {
	return hfConfigJSON(c, torchDType, nil, nil)
}

// hfConfigJSON is HFConfigJSON with the token ids, when known (nil: null).
func hfConfigJSON(c Config, torchDType string, bos, eos *int) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if _, ok := safetensors.FloatDType(torchDType); !ok {
		return nil, fmt.Errorf("model: torch_dtype %q not supported (float32, bfloat16, float16, float64)", torchDType)
	}
	m := hfCommonConfig(c, torchDType, bos, eos)
	if hfIsQwen2(c) {
		hfQwen2Config(c, m)
	} else {
		m["architectures"], m["model_type"] = []string{"LlamaForCausalLM"}, "llama"
		m["head_dim"] = c.HeadDimension()
		m["attention_bias"] = c.OBias // LlamaConfig's attention_bias is q, k, v and o
		m["mlp_bias"], m["pretraining_tp"] = false, 1
	}
	out, err := pyJSON(m)
	if err != nil {
		return nil, fmt.Errorf("model: config.json: %w", err)
	}
	return out, nil
}

// hfCommonConfig is what Llama's and Qwen2's config.json share. encoding/json
// sorts map keys, as transformers' sort_keys=True does.
func hfCommonConfig(c Config, torchDType string, bos, eos *int) map[string]any {
	return map[string]any{
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
		"attention_dropout":       pyFloat(0),
		"use_cache":               true,
		"torch_dtype":             torchDType,
		"bos_token_id":            bos,
		"eos_token_id":            eos,
		"initializer_range":       pyFloat(0.02),
		"transformers_version":    hfTransformersVersion,
	}
}

// pyFloat marshals as Python's repr does (10000.0, 1e-05), so config.json reads as
// transformers would have written it.
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil, fmt.Errorf("model: %v has no JSON form", v)
	}
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		return []byte(strconv.FormatFloat(v, 'e', -1, 64)), nil
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return []byte(s), nil
}
