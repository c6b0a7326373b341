package model

// ExportHF: a Hugging Face LlamaForCausalLM (or Qwen2ForCausalLM) folder as
// transformers' save_pretrained writes it: config.json, generation_config.json,
// and the weights in one model.safetensors or in shards
// model-0000i-of-0000N.safetensors listed by model.safetensors.index.json.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/torusml/torus/safetensors"
)

const (
	// DefaultMaxShardBytes is save_pretrained's max_shard_size "5GB" (decimal, as
	// huggingface_hub parses it) of transformers 4.x; 5.x raised it to 50GB.
	DefaultMaxShardBytes int64 = 5_000_000_000

	// hfTransformersVersion is the transformers_version our JSON files carry: a
	// release that writes the config.json keys HFConfigJSON writes (head_dim, torch_dtype).
	hfTransformersVersion = "4.46.0"

	hfGenerationFile = "generation_config.json"
)

// hfFolderFile matches the files of a model folder that an export writes or replaces:
// the weights, the index, their .tmp files from an interrupted write.
var hfFolderFile = regexp.MustCompile(`^(model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json)(\.tmp)?$`)

// HFExport are the options of ExportHF.
type HFExport struct {
	// DType of the stored weights and config.json's torch_dtype: "float32",
	// "bfloat16", "float16" or "float64"; "" keeps the params' dtype. Narrowing
	// rounds to nearest even.
	DType string
	// MaxShardBytes bounds the tensor bytes of one weight file (0: DefaultMaxShardBytes),
	// save_pretrained's max_shard_size. A model that fits is one model.safetensors, a
	// larger one is sharded; a single tensor over the bound gets a shard of its own.
	MaxShardBytes int64
	// BOSTokenID and EOSTokenID go into config.json and generation_config.json
	// when known; nil writes null in config.json and leaves them out of
	// generation_config.json, as transformers does for a config without them.
	BOSTokenID, EOSTokenID *int
}

// hfShard is one weight file and the tensors it holds, in state_dict order.
type hfShard struct {
	file  string
	names []string
}

// ExportHF writes p into dir as a Hugging Face LlamaForCausalLM folder (a
// Qwen2ForCausalLM one for a model with q, k and v biases alone, see
// HFConfigJSON), which AutoModelForCausalLM.from_pretrained and LoadHF read
// back. dir is created if missing; an existing dir must be empty or already
// hold a model folder (its other files, a tokenizer say, are left alone; stale
// weight files are removed). config.json is removed first and written last, so
// an export that fails midway leaves a folder that LoadHF refuses rather than
// one with wrong weights.
func ExportHF(dir string, p *Params, o HFExport) error {
	fail := func(err error) error { // Validate's errors carry the package prefix already
		return fmt.Errorf("model: export %s: %s", dir, strings.TrimPrefix(err.Error(), "model: "))
	}
	shards, index, err := planHFExport(p, &o)
	if err != nil {
		return fail(err)
	}
	cfgJSON, err := hfConfigJSON(p.Config, o.DType, o.BOSTokenID, o.EOSTokenID)
	if err != nil {
		return fail(err)
	}
	genJSON, err := hfGenerationConfigJSON(o.BOSTokenID, o.EOSTokenID)
	if err != nil {
		return fail(err)
	}
	if err := openHFDir(dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, hfConfigFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("model: export: %w", err)
	}
	meta := map[string]string{"format": "pt"} // transformers refuses safetensors files without it
	keep := map[string]bool{}
	for _, s := range shards {
		if err := safetensors.Write(filepath.Join(dir, s.file), s.names, p.T, meta, o.DType); err != nil {
			return err
		}
		keep[s.file] = true
	}
	if index != nil {
		if err := writeFileAtomic(filepath.Join(dir, hfIndexFile), index); err != nil {
			return err
		}
		keep[hfIndexFile] = true
	}
	if err := removeStaleHF(dir, keep); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, hfGenerationFile), genJSON); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, hfConfigFile), cfgJSON)
}

// planHFExport checks p against its config, resolves o's defaults, and splits the
// parameters into weight files; index is the index file's content (nil unsharded).
func planHFExport(p *Params, o *HFExport) (shards []hfShard, index []byte, err error) {
	if err := p.Config.Validate(); err != nil {
		return nil, nil, err
	}
	if o.DType == "" {
		o.DType = safetensors.FloatDTypeName(p.DType)
	}
	dt, ok := safetensors.FloatDType(o.DType)
	if !ok {
		return nil, nil, fmt.Errorf("dtype %q not supported (float32, bfloat16, float16, float64)", o.DType)
	}
	switch {
	case o.MaxShardBytes < 0:
		return nil, nil, fmt.Errorf("max shard bytes must be >= 0 (0: %d), got %d", DefaultMaxShardBytes, o.MaxShardBytes)
	case o.MaxShardBytes == 0:
		o.MaxShardBytes = DefaultMaxShardBytes
	}
	names := hfStateDictOrder(p.Config)
	sizes := make([]int64, len(names))
	var count int64
	for i, name := range names {
		t, ok := p.T[name]
		if !ok {
			return nil, nil, fmt.Errorf("params have no tensor %q", name)
		}
		shape, _ := p.Config.ParamShape(name)
		if !slices.Equal(t.Shape().Dimensions, shape) {
			return nil, nil, fmt.Errorf("tensor %q has shape %v, config wants %v", name, t.Shape().Dimensions, shape)
		}
		if !safetensors.IsFloat(t.DType()) {
			return nil, nil, fmt.Errorf("tensor %q is %s, want a float dtype", name, t.DType())
		}
		sizes[i] = int64(t.Size()) * int64(dt.Size())
		count += int64(t.Size())
	}
	shards = splitHFShards(names, sizes, o.MaxShardBytes)
	if len(shards) == 1 {
		return shards, nil, nil
	}
	var total int64
	for _, s := range sizes {
		total += s
	}
	weightMap := map[string]string{}
	for _, s := range shards {
		for _, n := range s.names {
			weightMap[n] = s.file
		}
	}
	// total_size as in every transformers release; newer ones add total_parameters.
	// Loaders read only weight_map.
	index, err = pyJSON(map[string]any{
		"metadata":   map[string]int64{"total_parameters": count, "total_size": total},
		"weight_map": weightMap,
	})
	return shards, index, err
}

// hfStateDictOrder lists the parameters in the order of LlamaForCausalLM's (and
// Qwen2ForCausalLM's) state_dict (modules in their registration order: each
// decoder layer's attention q, k, v, o, each weight before its bias, then MLP gate,
// up, down, then its two norms), so that shards split as save_pretrained would
// split the same model.
func hfStateDictOrder(c Config) []string {
	var layer []string
	for _, p := range []struct {
		weight, bias string
		has          bool
	}{{QProj, QProjBias, c.QKVBias}, {KProj, KProjBias, c.QKVBias}, {VProj, VProjBias, c.QKVBias}, {OProj, OProjBias, c.OBias}} {
		layer = append(layer, p.weight)
		if p.has {
			layer = append(layer, p.bias)
		}
	}
	layer = append(layer, GateProj, UpProj, DownProj, InputNorm, PostNorm)
	names := []string{"model.embed_tokens.weight"}
	for i := range c.Layers {
		for _, s := range layer {
			names = append(names, LayerParam(i, s))
		}
	}
	names = append(names, "model.norm.weight")
	if !c.TieEmbeddings {
		names = append(names, "lm_head.weight")
	}
	return names
}

// splitHFShards groups tensors (in order, of the given byte sizes) into weight
// files as huggingface_hub's split_state_dict_into_shards_factory does, the
// splitter save_pretrained uses: greedily, a new shard when the next tensor would
// take the current one over limit; a tensor over the limit gets a shard of its own,
// which takes its place in the list when it is met, before the shard still filling.
// One shard is model.safetensors, more are model-00001-of-0000N.safetensors, ...
func splitHFShards(names []string, sizes []int64, limit int64) []hfShard {
	var groups [][]string
	var cur []string
	var curSize int64
	for i, name := range names {
		switch {
		case sizes[i] > limit:
			groups = append(groups, []string{name})
			continue
		case curSize+sizes[i] > limit:
			groups = append(groups, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, name)
		curSize += sizes[i]
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	if len(groups) == 1 {
		return []hfShard{{hfWeightsFile, groups[0]}}
	}
	shards := make([]hfShard, len(groups))
	for i, g := range groups {
		shards[i] = hfShard{fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups)), g}
	}
	return shards
}

// openHFDir creates dir if missing, or accepts it if it is empty or already holds a
// model folder: config.json naming a model_type, or weights.
func openHFDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("model: export: %w", err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("model: export: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if hfFolderFile.MatchString(e.Name()) {
			return nil
		}
	}
	if raw, err := os.ReadFile(filepath.Join(dir, hfConfigFile)); err == nil {
		var c struct {
			ModelType *string `json:"model_type"`
		}
		if json.Unmarshal(raw, &c) == nil && c.ModelType != nil {
			return nil
		}
	}
	return fmt.Errorf("model: export: %s is not empty and holds no Hugging Face model (no config.json with a model_type, "+
		"no model*.safetensors): refusing to write into it; choose an empty or new folder", dir)
}

// removeStaleHF removes the weight and index files of an earlier export that this
// one did not write: LoadHF would read a stale model.safetensors before an index.
func removeStaleHF(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("model: export: %w", err)
	}
	for _, e := range entries {
		if hfFolderFile.MatchString(e.Name()) && !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("model: export: remove stale %w", err)
			}
		}
	}
	return nil
}

// hfGenerationConfigJSON is the generation_config.json save_pretrained writes for a
// model config: GenerationConfig.from_model_config keeps the config's non-null
// generation fields (here the token ids), and the file holds what differs from
// GenerationConfig's defaults plus _from_model_config and transformers_version.
func hfGenerationConfigJSON(bos, eos *int) ([]byte, error) {
	m := map[string]any{"_from_model_config": true, "transformers_version": hfTransformersVersion}
	if bos != nil {
		m["bos_token_id"] = *bos
	}
	if eos != nil {
		m["eos_token_id"] = *eos
	}
	return pyJSON(m)
}

// pyJSON renders v as transformers writes its JSON files: json.dumps(v, indent=2,
// sort_keys=True) + "\n" (encoding/json sorts map keys; no HTML escaping).
func pyJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil { // Encode ends with the newline
		return nil, err
	}
	return b.Bytes(), nil
}

func writeFileAtomic(path string, data []byte) error {
	return safetensors.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
