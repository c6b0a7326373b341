package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/safetensors"
)

// PEFT's adapter folder: adapter_config.json and adapter_model.safetensors,
// tensors named base_model.model.<the base model's name>. The base weights
// that train beside the adapters (embed, norms) are PEFT's modules_to_save and
// are stored in the same file under their own names.

const (
	// AdapterConfigFile and AdapterFile are PEFT's file names.
	AdapterConfigFile = "adapter_config.json"
	AdapterFile       = "adapter_model.safetensors"

	peftPrefix = "base_model.model."
)

// peftModule is the module name PEFT's target_modules uses for a parameter suffix.
func peftModule(suffix string) string {
	s := strings.TrimSuffix(suffix, ".weight")
	return s[strings.LastIndexByte(s, '.')+1:] // self_attn.q_proj -> q_proj
}

// AdapterConfigJSON is adapter_config.json for adapters l, as PEFT writes it.
// baseModel is the base model's folder or hub name ("" writes null).
func AdapterConfigJSON(l LoRA, dropout float64, baseModel string) ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	var targets []string
	for _, m := range loraModules {
		if l.Targeted(m.suffix) {
			targets = append(targets, peftModule(m.suffix))
		}
	}
	var save []string
	if l.TrainEmbed {
		save = append(save, "embed_tokens")
	}
	if l.TrainNorm {
		save = append(save, "norm") // PEFT matches by suffix: every *norm module
	}
	m := map[string]any{
		"peft_type":               "LORA",
		"task_type":               "CAUSAL_LM",
		"base_model_name_or_path": nil,
		"r":                       l.Rank,
		"lora_alpha":              pyFloat(l.Alpha),
		"lora_dropout":            pyFloat(dropout),
		"target_modules":          targets,
		"modules_to_save":         save,
		"bias":                    "none",
		"fan_in_fan_out":          false,
		"inference_mode":          true,
		"init_lora_weights":       true,
		"use_rslora":              false,
		"use_dora":                false,
		"layers_to_transform":     nil,
		"layers_pattern":          nil,
		"rank_pattern":            map[string]any{},
		"alpha_pattern":           map[string]any{},
		"revision":                nil,
	}
	if baseModel != "" {
		m["base_model_name_or_path"] = baseModel
	}
	if save == nil {
		m["modules_to_save"] = nil
	}
	return pyJSON(m)
}

// PEFTName is the key PEFT stores a parameter under.
func PEFTName(name string) string { return peftPrefix + name }

// AdapterTensors are the names (PEFT keys, in a fixed order) and tensors of
// adapter_model.safetensors: the adapters and the base weights that train.
func AdapterTensors(p *Params) ([]string, map[string]*tensors.Tensor, error) {
	if p.LoRA == nil {
		return nil, nil, errors.New("model: the model has no LoRA adapters")
	}
	if err := p.checkAdapters(); err != nil {
		return nil, nil, err
	}
	var names []string
	ts := map[string]*tensors.Tensor{}
	for _, n := range p.Trainable() {
		names = append(names, PEFTName(n))
		ts[PEFTName(n)] = p.T[n]
	}
	return names, ts, nil
}

// WritePEFT writes p's adapters into dir as a PEFT folder (adapter_config.json,
// adapter_model.safetensors), each file atomically; dtype as safetensors.Write.
func WritePEFT(dir string, p *Params, dropout float64, baseModel, dtype string) error {
	if p.LoRA == nil {
		return errors.New("model: the model has no LoRA adapters: export it with --format hf")
	}
	cfg, err := AdapterConfigJSON(*p.LoRA, dropout, baseModel)
	if err != nil {
		return err
	}
	names, ts, err := AdapterTensors(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if err := safetensors.Write(filepath.Join(dir, AdapterFile), names, ts, map[string]string{"format": "pt"}, dtype); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, AdapterConfigFile), cfg)
}

// HasAdapters reports whether dir holds a PEFT adapter config.
func HasAdapters(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, AdapterConfigFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("model: %w", err)
}

// ReadAdapterConfig reads a PEFT adapter_config.json into a LoRA, refusing
// what torus cannot compute (DoRA, rsLoRA, bias, rank or alpha patterns,
// unknown modules).
func ReadAdapterConfig(path string) (LoRA, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return LoRA{}, fmt.Errorf("model: %w", err)
	}
	var c struct {
		PeftType      string          `json:"peft_type"`
		R             int             `json:"r"`
		LoraAlpha     float64         `json:"lora_alpha"`
		TargetModules json.RawMessage `json:"target_modules"`
		ModulesToSave []string        `json:"modules_to_save"`
		Bias          string          `json:"bias"`
		FanInFanOut   bool            `json:"fan_in_fan_out"`
		UseRSLoRA     bool            `json:"use_rslora"`
		UseDoRA       bool            `json:"use_dora"`
		RankPattern   map[string]any  `json:"rank_pattern"`
		AlphaPattern  map[string]any  `json:"alpha_pattern"`
		Layers        json.RawMessage `json:"layers_to_transform"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return LoRA{}, fmt.Errorf("model: %s: %w", path, err)
	}
	fail := func(format string, args ...any) (LoRA, error) {
		return LoRA{}, fmt.Errorf("model: %s: %s", path, fmt.Sprintf(format, args...))
	}
	switch {
	case c.PeftType != "LORA":
		return fail("peft_type %q: only LORA is supported", c.PeftType)
	case c.Bias != "" && c.Bias != "none":
		return fail("bias %q: only \"none\" is supported", c.Bias)
	case c.FanInFanOut:
		return fail("fan_in_fan_out is not supported (a LLaMA's projections are nn.Linear)")
	case c.UseRSLoRA || c.UseDoRA:
		return fail("use_rslora / use_dora are not supported")
	case len(c.RankPattern) > 0 || len(c.AlphaPattern) > 0:
		return fail("rank_pattern / alpha_pattern are not supported")
	case len(c.Layers) > 0 && string(c.Layers) != "null":
		return fail("layers_to_transform is not supported")
	}
	var targets []string
	if err := json.Unmarshal(c.TargetModules, &targets); err != nil {
		return fail("target_modules: want a list of module names: %v", err)
	}
	l := LoRA{Rank: c.R, Alpha: c.LoraAlpha}
	for _, t := range targets {
		short := ""
		for _, m := range loraModules {
			if peftModule(m.suffix) == t {
				short = m.short
			}
		}
		if short == "" {
			return fail("target_modules: %q is not a projection of a LLaMA layer (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", t)
		}
		l.Targets = append(l.Targets, short)
	}
	for _, s := range c.ModulesToSave {
		switch s {
		case "embed_tokens":
			l.TrainEmbed = true
		case "norm":
			l.TrainNorm = true
		default:
			return fail("modules_to_save: %q is not supported (embed_tokens, norm)", s)
		}
	}
	if err := l.Validate(); err != nil {
		return fail("%v", err)
	}
	return l, nil
}

// ReadAdapters reads dir's PEFT adapters into p (which must have none): the
// adapter matrices, and the trained base weights (modules_to_save) replacing
// p's. Every tensor's name and shape is checked.
func ReadAdapters(dir string, p *Params) error {
	if p.LoRA != nil {
		return errors.New("model: the model has adapters already")
	}
	l, err := ReadAdapterConfig(filepath.Join(dir, AdapterConfigFile))
	if err != nil {
		return err
	}
	path := filepath.Join(dir, AdapterFile)
	f, err := safetensors.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	q := &Params{Config: p.Config, DType: p.DType, T: map[string]*tensors.Tensor{}, LoRA: &l}
	want := map[string]bool{}
	for _, n := range q.Trainable() {
		want[PEFTName(n)] = true
	}
	got := map[string]*tensors.Tensor{}
	for _, e := range f.Entries() {
		if !want[e.Name] {
			return fmt.Errorf("model: %s: unexpected tensor %q for adapters %+v", path, e.Name, l)
		}
		if !safetensors.IsFloat(e.DType) {
			return fmt.Errorf("model: %s: tensor %q is %s, want a float dtype", path, e.Name, e.DType)
		}
		t, err := f.Read(e, p.DType)
		if err != nil {
			return err
		}
		got[e.Name] = t
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		if got[n] == nil {
			return fmt.Errorf("model: %s: missing tensor %q", path, n)
		}
	}
	base := map[string]*tensors.Tensor{}
	for _, n := range q.Trainable() {
		t := got[PEFTName(n)]
		if _, isBase := p.T[n]; isBase {
			if !slices.Equal(t.Shape().Dimensions, p.T[n].Shape().Dimensions) {
				return fmt.Errorf("model: %s: tensor %q has shape %v, the model's %v", path, PEFTName(n), t.Shape().Dimensions, p.T[n].Shape().Dimensions)
			}
			base[n] = t
			continue
		}
		q.T[n] = t
	}
	if err := q.checkAdapters(); err != nil {
		return fmt.Errorf("%w (in %s)", err, path)
	}
	for n, t := range base {
		p.T[n] = t
	}
	for n, t := range q.T {
		p.T[n] = t
	}
	p.LoRA = &l
	return nil
}
