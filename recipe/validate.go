package recipe

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/torusml/torus/parallel"
)

// Validate checks every rule and reports every problem at once, as
// Problems, one per line. On a parsed recipe each problem says where its
// value came from (file line, --set, or "(default)").
func (r Recipe) Validate() error {
	c := &checker{r: r}

	if r.Name == "" {
		c.add("name", "must not be empty")
	}
	c.oneOf("backend", r.Backend, "auto", "cpu", "cuda", "go")

	m := r.Model
	if m.From == "" { // with from, the shape comes from the folder's config.json
		c.within("model.vocab", m.Vocab, 2, 1<<23)
		c.within("model.dim", m.Dim, 1, 1<<17)
		c.within("model.layers", m.Layers, 1, 1024)
		c.within("model.heads", m.Heads, 1, 4096)
		c.within("model.kv_heads", m.KVHeads, 1, 4096)
		if m.Heads >= 1 && m.KVHeads >= 1 && m.Heads%m.KVHeads != 0 {
			c.addFirst([]string{"model.kv_heads", "model.heads"},
				"kv_heads (%d) must divide heads (%d)", m.KVHeads, m.Heads)
		}
		switch {
		case m.HeadDim > 4096:
			c.add("model.head_dim", "must be <= 4096, got %d", m.HeadDim)
		case m.HeadDim < 0 || m.HeadDim%2 != 0:
			// RoPE rotates dimensions in pairs.
			c.add("model.head_dim", "must be 0 (dim/heads) or a positive even number, got %d", m.HeadDim)
		case m.HeadDim == 0 && m.Dim >= 1 && m.Heads >= 1:
			if m.Dim%m.Heads != 0 {
				c.addFirst([]string{"model.dim", "model.heads"},
					"dim (%d) must be divisible by heads (%d) when head_dim is 0", m.Dim, m.Heads)
			} else if (m.Dim/m.Heads)%2 != 0 {
				c.addFirst([]string{"model.dim", "model.heads"},
					"dim/heads (%d/%d = %d) must be even for RoPE when head_dim is 0", m.Dim, m.Heads, m.Dim/m.Heads)
			}
		}
		c.within("model.mlp_dim", m.MLPDim, 1, 1<<20)
		c.positive("model.rope_theta", m.RopeTheta)
		c.positive("model.norm_eps", m.NormEps)
	}
	c.oneOf("model.dtype", m.DType, "float32", "float64", "bfloat16")
	c.positive("model.init_std", m.InitStd)
	c.ropeScaling(m.RopeScaling)

	d := r.Data
	if len(d.Sources) == 0 {
		c.add("data.sources", "at least one source is needed, e.g. [{type: text_dir, path: ./corpus}]")
	}
	for i, s := range d.Sources {
		key := "data.sources." + strconv.Itoa(i)
		c.oneOf(key+".type", s.Type, SourceTypes...)
		if s.Type == "passkey" {
			c.atLeast(key+".count", s.Count, 1)
			c.atLeast(key+".min_len", s.MinLen, 0)
			c.atLeast(key+".max_len", s.MaxLen, 0)
			c.atLeast(key+".key_digits", s.KeyDigits, 0)
			if s.KeyDigits > maxKeyDigits {
				c.add(key+".key_digits", "must be at most %d, got %d", maxKeyDigits, s.KeyDigits)
			}
			lo, hi := s.MinLen, s.MaxLen
			if lo == 0 {
				lo = d.SeqLen
			}
			if hi == 0 {
				hi = d.SeqLen
			}
			if lo > hi {
				c.addFirst([]string{key + ".min_len", key + ".max_len"}, "min_len (%d) must not exceed max_len (%d)", lo, hi)
			}
		} else if s.Path == "" {
			c.add(key+".path", "must not be empty")
		}
		if s.Type == "text_dir" || s.DocPer != "" {
			c.oneOf(key+".doc_per", s.DocPer, "file", "directory")
		}
		if s.Type == "jsonl" && s.Field == "" {
			c.add(key+".field", "must name the text field of a jsonl source")
		}
		c.sourceKeys(key, s, r.Model.From)
		for j, g := range s.Include {
			if _, err := filepath.Match(g, ""); err != nil {
				c.add(key+".include."+strconv.Itoa(j), "bad glob %q: %v", g, err)
			}
		}
		for j, g := range s.Exclude {
			if _, err := filepath.Match(g, ""); err != nil {
				c.add(key+".exclude."+strconv.Itoa(j), "bad glob %q: %v", g, err)
			}
		}
	}
	c.tokenizer(d.Tokenizer, r.Model.From)
	c.within("data.seq_len", d.SeqLen, 2, 1<<27) // one input and one target token; at most 134M
	c.within("data.interleave", d.Interleave, 1, 4096)
	c.oneOf("data.pack", d.Pack, "split", "whole")
	c.atLeast("data.heldout", d.Heldout, 0)

	pc := r.Parallel
	c.within("parallel.workers", pc.Workers, 1, 1<<16)
	c.within("parallel.dp", pc.DP, 1, 1<<16)
	if pc.SP < 0 {
		c.add("parallel.sp", "must be >= 0 (0: workers/dp), got %d", pc.SP)
	}
	if pc.Workers >= 1 && pc.DP >= 1 && pc.SP >= 0 && (pc.Strategy == "ring" || pc.Strategy == "ulysses") {
		var bad *parallel.LayoutError
		if _, err := r.Topology().Mesh(); errors.As(err, &bad) {
			c.add(bad.Key, "%s", bad.Msg)
		}
	}
	c.oneOf("parallel.strategy", pc.Strategy, "ring", "ulysses")
	c.oneOf("parallel.balance", pc.Balance, "adaptive", "off")
	switch {
	case pc.Zero == 2 || pc.Zero == 3:
		c.add("parallel.zero", "stage %d (sharded gradients%s) is not built yet: 0 or 1", pc.Zero, map[bool]string{true: " and weights", false: ""}[pc.Zero == 3])
	case pc.Zero != 0 && pc.Zero != 1:
		c.add("parallel.zero", "must be 0 or 1, got %d", pc.Zero)
	}

	c.oneOf("memory.recompute", r.Memory.Recompute, "layer", "except_attention")
	c.oneOf("memory.offload", r.Memory.Offload, "none", "host", "disk")
	c.atLeast("memory.limit_mib", r.Memory.LimitMiB, 0)
	c.atLeast("memory.loss_chunk", r.Memory.LossChunk, 0)
	c.atLeast("memory.attn_block_q", r.Memory.AttnBlockQ, 1)
	c.atLeast("memory.attn_block_k", r.Memory.AttnBlockK, 1)

	o := r.Optim
	c.positive("optim.lr", o.LR)
	c.inUnit("optim.beta1", o.Beta1)
	c.inUnit("optim.beta2", o.Beta2)
	c.positive("optim.eps", o.Eps)
	c.nonNegative("optim.weight_decay", o.WeightDecay)
	c.nonNegative("optim.max_grad_norm", o.MaxGradNorm)
	c.oneOf("optim.on_nonfinite", o.OnNonFinite, "stop", "skip")
	c.atLeast("optim.nonfinite_limit", o.NonFiniteLimit, 1)

	s := r.Schedule
	c.atLeast("schedule.steps", s.Steps, 1)
	c.atLeast("schedule.warmup_steps", s.WarmupSteps, 0) // past schedule.steps is capped (Cap), not refused
	c.oneOf("schedule.decay", s.Decay, "cosine", "linear", "constant")
	if !(s.MinLRRatio >= 0 && s.MinLRRatio <= 1) {
		c.add("schedule.min_lr_ratio", "must be in [0, 1], got %v", s.MinLRRatio)
	}
	c.within("schedule.grad_accum", s.GradAccum, 1, 1<<20)

	c.oneOf("attention.kernel", r.Attention.Kernel, "auto", "blockwise")
	if g := r.Attention.ShiftGroups; g != 0 && (g < 2 || g%2 != 0) {
		c.add("attention.shift_groups", "must be 0 (full attention) or an even group size >= 2, got %d", g)
	}
	c.lora(r.LoRA)

	c.atLeast("checkpoint.every_steps", r.Checkpoint.EverySteps, 0)
	c.atLeast("checkpoint.keep_last", r.Checkpoint.KeepLast, 0)
	c.atLeast("checkpoint.keep_every", r.Checkpoint.KeepEvery, 0)

	c.atLeast("launch.max_restarts", r.Launch.MaxRestarts, 0)
	c.atLeast("log.every", r.Log.Every, 1)
	c.atLeast("log.eval_every", r.Log.EvalEvery, 0)
	c.within("log.eval_batches", r.Log.EvalBatches, 1, 1<<16)
	if r.Log.EvalEvery > 0 && r.Data.Heldout < 1 {
		c.addFirst([]string{"log.eval_every", "data.heldout"}, "eval_every %d needs held-out documents: set data.heldout >= 1", r.Log.EvalEvery)
	}
	c.oneOf("log.progress", r.Log.Progress, "auto", "bar", "plain", "none")

	return c.probs.err()
}

// SourceTypes are the data source types.
var SourceTypes = []string{"text_dir", "text_file", "jsonl", "sft", "parquet", "passkey"}

// ChatTemplateFromModel is the chat_template value that takes the template of
// the model folder model.from.
const ChatTemplateFromModel = "from_model"

// sourceKeys checks the keys that belong to one source type: column
// (parquet) and chat_template (sft). from is model.from.
func (c *checker) sourceKeys(key string, s SourceConfig, from string) {
	if s.Type == "parquet" && s.Column == "" {
		c.add(key+".column", "must name the text column of a parquet source")
	}
	if s.Column != "" && s.Type != "parquet" {
		hint := ""
		if s.Type == "jsonl" {
			hint = " (a jsonl source names its text with field)"
		}
		c.add(key+".column", "is for parquet sources, not %s%s", typeName(s.Type), hint)
	}
	switch t := s.ChatTemplate; {
	case t == "":
	case s.Type != "sft":
		c.add(key+".chat_template", "is for sft sources, not %s", typeName(s.Type))
	case t == ChatTemplateFromModel && from == "":
		c.add(key+".chat_template", "from_model needs model.from: the model folder whose chat template to use")
	}
}

// typeName is a source type for a message.
func typeName(t string) string {
	if t == "" {
		return "a source without a type"
	}
	return t
}

// LoRATargets are the projections lora.targets may name, and the base weights
// lora.trainable may.
var (
	LoRATargets   = []string{"q", "k", "v", "o", "gate", "up", "down"}
	LoRATrainable = []string{"embed", "norm"}
)

func (c *checker) lora(l LoRAConfig) {
	if l.Rank == 0 {
		if _, ok := c.r.origins["lora.rank"]; ok {
			c.add("lora.rank", "must be >= 1 (leave lora out to train every weight), got 0")
			return
		}
		for k := range c.r.origins {
			if strings.HasPrefix(k, "lora.") {
				c.add("lora.rank", "must be set (>= 1) to use the other lora keys (%s is set)", k)
				return
			}
		}
		return
	}
	c.atLeast("lora.rank", l.Rank, 1)
	c.positive("lora.alpha", l.Alpha)
	if !(l.Dropout >= 0 && l.Dropout < 1) {
		c.add("lora.dropout", "must be in [0, 1), got %v", l.Dropout)
	}
	if len(l.Targets) == 0 {
		c.add("lora.targets", "must name at least one of %s", strings.Join(LoRATargets, ", "))
	}
	c.names("lora.targets", l.Targets, LoRATargets)
	c.names("lora.trainable", l.Trainable, LoRATrainable)
	c.oneOf("lora.base_dtype", l.BaseDType, "stored", "master")
}

// names checks that every element of a list is one of allowed, once.
func (c *checker) names(key string, got, allowed []string) {
	seen := map[string]bool{}
	for i, g := range got {
		k := key + "." + strconv.Itoa(i)
		if seen[g] {
			c.add(k, "%q is named twice", g)
		}
		seen[g] = true
		ok := false
		for _, a := range allowed {
			ok = ok || a == g
		}
		if !ok {
			msg := fmt.Sprintf("there is no %q: must be one of %s", g, strings.Join(allowed, ", "))
			if s := closest(g, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			c.add(k, "%s", msg)
		}
	}
}

// RopeScalingTypes are the rope_scaling types torus knows, as Hugging Face names them.
var RopeScalingTypes = []string{"none", "linear", "dynamic", "yarn", "llama3"}

func (c *checker) ropeScaling(s RopeScalingConfig) {
	const k = "model.rope_scaling."
	c.oneOf(k+"type", s.Type, RopeScalingTypes...)
	if s.Type == "none" || s.Type == "" {
		return
	}
	if c.finite(k+"factor", s.Factor) && !(s.Factor >= 1) {
		c.add(k+"factor", "must be >= 1 (how many times longer the context gets), got %v", s.Factor)
	}
	c.atLeast(k+"original_max_position_embeddings", s.OriginalMaxPositions, 0)
	switch s.Type {
	case "llama3":
		c.positive(k+"low_freq_factor", s.LowFreqFactor)
		if !(s.HighFreqFactor > s.LowFreqFactor) {
			c.add(k+"high_freq_factor", "must be > low_freq_factor (%v), got %v", s.LowFreqFactor, s.HighFreqFactor)
		}
	case "yarn":
		c.positive(k+"beta_slow", s.BetaSlow)
		if !(s.BetaFast > s.BetaSlow) {
			c.add(k+"beta_fast", "must be > beta_slow (%v), got %v", s.BetaSlow, s.BetaFast)
		}
		c.nonNegative(k+"attention_factor", s.AttentionFactor)
	}
}

// Cap brings into range the values that Validate lets through past their
// range because what they mean is plain, and returns a warning for each value
// it changed, in Problem's form (where the value came from, the key, what
// was done). Today that is schedule.warmup_steps past schedule.steps: it
// becomes schedule.steps (the learning rate warms up over the whole run).
// Parse does not call it: a caller that trains calls it after Load or Parse
// and shows the warnings; calling it again changes nothing.
func (r *Recipe) Cap() Problems {
	var warns Problems
	if s := &r.Schedule; s.Steps >= 1 && s.WarmupSteps > s.Steps {
		warns = append(warns, Problem{Where: r.where("schedule.warmup_steps"), Key: "schedule.warmup_steps",
			Msg: fmt.Sprintf("%d is past schedule.steps (%d): capped to %d, so the learning rate warms up over the whole run", s.WarmupSteps, s.Steps, s.Steps)})
		s.WarmupSteps = s.Steps
	}
	return warns
}

// checker collects the problems of one Validate.
type checker struct {
	r     Recipe
	probs Problems
}

func (c *checker) add(key, format string, args ...any) {
	c.probs = append(c.probs, Problem{Where: c.r.where(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addFirst reports a problem that involves several keys under the first of
// them that the recipe set (so it points at a line), else under the first.
func (c *checker) addFirst(keys []string, format string, args ...any) {
	for _, k := range keys {
		if _, ok := c.r.origins[k]; ok {
			c.add(k, format, args...)
			return
		}
	}
	c.add(keys[0], format, args...)
}

func (c *checker) oneOf(key, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	if len(allowed) == 1 {
		c.add(key, "must be %s (the only one supported so far), got %q", quoted[0], got)
		return
	}
	c.add(key, "must be one of %s, got %q", strings.Join(quoted, ", "), got)
}

// maxKeyDigits bounds data.sources[].key_digits (data.PasskeyMaxDigits).
const maxKeyDigits = 64

// within bounds a size from above too, far beyond what any run uses (the
// model's limits are model.MaxVocab and its kin): a typo is refused before
// anything is allocated for it.
func (c *checker) within(key string, got, least, most int) {
	if got > most {
		c.add(key, "must be <= %d, got %d", most, got)
		return
	}
	c.atLeast(key, got, least)
}

func (c *checker) atLeast(key string, got, least int) {
	if got < least {
		c.add(key, "must be >= %d, got %d", least, got)
	}
}

// The float checks are written so that NaN fails them, and they reject
// infinities first.

func (c *checker) finite(key string, got float64) bool {
	if math.IsInf(got, 0) || math.IsNaN(got) {
		c.add(key, "must be a finite number, got %v", got)
		return false
	}
	return true
}

func (c *checker) positive(key string, got float64) {
	if c.finite(key, got) && !(got > 0) {
		c.add(key, "must be > 0, got %v", got)
	}
}

func (c *checker) nonNegative(key string, got float64) {
	if c.finite(key, got) && !(got >= 0) {
		c.add(key, "must be >= 0, got %v", got)
	}
}

// inUnit checks 0 <= got < 1, as for Adam's betas.
func (c *checker) inUnit(key string, got float64) {
	if !(got >= 0 && got < 1) {
		c.add(key, "must be in [0, 1), got %v", got)
	}
}

// tokenizer checks data.tokenizer: byte, from_model with a model.from that has
// a tokenizer.json, or a tokenizer.json or a model folder holding one.
func (c *checker) tokenizer(spec, from string) {
	switch spec {
	case "byte":
	case TokenizerFromModel:
		if from == "" {
			c.add("data.tokenizer", "from_model needs model.from: the model folder whose tokenizer.json to use")
		} else if !hasTokenizerJSON(from) {
			c.add("data.tokenizer", "from_model: model.from %s has no tokenizer.json", from)
		}
	default:
		if !hasTokenizerJSON(spec) {
			c.add("data.tokenizer", `must be "byte", "from_model", or a tokenizer.json or a model folder holding one, got %q`, spec)
		}
	}
}

// hasTokenizerJSON reports whether path is a file, or a folder with a
// tokenizer.json (the file's content is checked when it is loaded).
func hasTokenizerJSON(path string) bool {
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		fi, err = os.Stat(filepath.Join(path, "tokenizer.json"))
	}
	return err == nil && !fi.IsDir()
}
