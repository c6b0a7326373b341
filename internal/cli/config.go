package cli

import (
	"fmt"
	"slices"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/checkpoint"
	"github.com/torusml/torus/data"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
	"github.com/torusml/torus/recipe"
	"github.com/torusml/torus/trainer"
)

// trainerConfig turns a validated recipe into the trainer's typed Config.
func trainerConfig(r recipe.Recipe) (trainer.Config, error) {
	y, err := r.YAML()
	if err != nil {
		return trainer.Config{}, err
	}
	dt, compute := dtypes.Float32, dtypes.DType(0)
	switch r.Model.DType {
	case "float32":
	case "float64":
		dt = dtypes.Float64
	case "bfloat16": // mixed precision: bf16 compute over float32 master weights
		compute = dtypes.BFloat16
	default:
		return trainer.Config{}, fmt.Errorf("model.dtype %q not supported (float32, float64 or bfloat16)", r.Model.DType)
	}
	if r.LoRA.Rank > 0 && r.LoRA.Dropout > 0 {
		// Adapters run merged into their weights; dropout on their input alone
		// would need them apart.
		return trainer.Config{}, fmt.Errorf("lora.dropout %v: dropout on the adapters is not supported yet; set it to 0", r.LoRA.Dropout)
	}
	var srcs []data.SourceConfig
	for i, s := range r.Data.Sources {
		src := data.SourceConfig{Type: s.Type, Path: s.Path, Include: s.Include, Exclude: s.Exclude, DocPer: s.DocPer, Field: s.Field, Column: s.Column,
			Count: s.Count, MinLen: s.MinLen, MaxLen: s.MaxLen, KeyDigits: s.KeyDigits, SeqLen: r.Data.SeqLen, Seed: uint64(r.Seed)}
		if t := s.ChatTemplate; t != "" {
			if t == recipe.ChatTemplateFromModel {
				t = r.Model.From
			}
			ct, err := data.LoadChatTemplate(t)
			if err != nil {
				return trainer.Config{}, fmt.Errorf("data.sources.%d.chat_template: %w", i, err)
			}
			src.ChatTemplate = ct
		}
		srcs = append(srcs, src)
	}
	m := r.Model
	return trainer.Config{
		Seed:    uint64(r.Seed),
		Backend: r.Backend,
		Model: model.Config{
			Vocab: m.Vocab, Dim: m.Dim, Layers: m.Layers, Heads: m.Heads, KVHeads: m.KVHeads, HeadDim: m.HeadDim,
			MLPDim: m.MLPDim, RopeTheta: m.RopeTheta, NormEps: m.NormEps, TieEmbeddings: m.TieEmbeddings,
			RopeScaling: ropeScaling(r),
		},
		From:             m.From,
		RopeScaling:      fromRopeScaling(r),
		DType:            dt,
		Compute:          compute,
		InitStd:          m.InitStd,
		Sources:          srcs,
		Tokenizer:        r.TokenizerSpec(),
		TokenCache:       tokenCacheDir(r.Data.TokenCache),
		SeqLen:           r.Data.SeqLen,
		Shuffle:          r.Data.Shuffle,
		Interleave:       r.Data.Interleave,
		WholeDocs:        r.Data.Pack == "whole",
		Heldout:          r.Data.Heldout,
		EvalEvery:        r.Log.EvalEvery,
		EvalBatches:      r.Log.EvalBatches,
		AttnBlockQ:       r.Memory.AttnBlockQ,
		AttnBlockK:       r.Memory.AttnBlockK,
		ShiftGroups:      r.Attention.ShiftGroups,
		Blockwise:        r.Attention.Kernel == "blockwise",
		LoRA:             loraConfig(r.LoRA),
		KeepFrozenStored: r.LoRA.BaseDType == "stored",
		KeepAttention:    r.Memory.Recompute == "except_attention",
		Offload:          r.Memory.Offload,
		MemoryLimit:      int64(r.Memory.LimitMiB) << 20,
		LossChunk:        r.Memory.LossChunk,
		Zero:             r.Parallel.Zero,
		AdamW:            optim.AdamWConfig{Beta1: r.Optim.Beta1, Beta2: r.Optim.Beta2, Eps: r.Optim.Eps, WeightDecay: r.Optim.WeightDecay},
		Schedule: optim.Schedule{LR: r.Optim.LR, WarmupSteps: r.Schedule.WarmupSteps, Steps: r.Schedule.Steps,
			Decay: r.Schedule.Decay, MinLRRatio: r.Schedule.MinLRRatio},
		MaxGradNorm:     r.Optim.MaxGradNorm,
		SkipNonFinite:   r.Optim.OnNonFinite == "skip",
		NonFiniteLimit:  r.Optim.NonFiniteLimit,
		DecayNorms:      r.Optim.DecayNorms,
		DecayEmbeddings: r.Optim.DecayEmbeddings,
		GradAccum:       r.Schedule.GradAccum,
		CheckpointEvery: r.Checkpoint.EverySteps,
		Keep:            checkpoint.Policy{KeepLast: r.Checkpoint.KeepLast, KeepEvery: r.Checkpoint.KeepEvery},
		RecipeYAML:      y,
		RecipeHash:      r.Hash(),
	}, nil
}

// ropeScaling is the recipe's model.rope_scaling (zero for type none). A model
// trained from scratch has no max_position_embeddings, so an unset original
// context is data.seq_len / factor; with model.from it is the folder's.
func ropeScaling(r recipe.Recipe) model.RopeScaling {
	s := r.Model.RopeScaling
	if s.Type == "" || s.Type == "none" {
		return model.RopeScaling{}
	}
	rs := model.RopeScaling{Type: s.Type, Factor: s.Factor, OriginalMaxPositions: s.OriginalMaxPositions,
		LowFreqFactor: s.LowFreqFactor, HighFreqFactor: s.HighFreqFactor,
		BetaFast: s.BetaFast, BetaSlow: s.BetaSlow, AttentionFactor: s.AttentionFactor}
	if rs.OriginalMaxPositions == 0 && r.Model.From == "" && s.Factor >= 1 {
		rs.OriginalMaxPositions = max(1, int(float64(r.Data.SeqLen)/s.Factor))
	}
	return rs
}

// fromRopeScaling is the rope_scaling that replaces model.from's: the recipe's
// when it sets a type other than none, else nil (the folder's stays).
func fromRopeScaling(r recipe.Recipe) *model.RopeScaling {
	s := ropeScaling(r)
	if r.Model.From == "" || !s.Enabled() {
		return nil
	}
	return &s
}

// loraConfig is the recipe's lora section as the model's adapter configuration
// (the zero LoRA when rank is 0: no adapters).
func loraConfig(l recipe.LoRAConfig) model.LoRA {
	if l.Rank == 0 {
		return model.LoRA{}
	}
	return model.LoRA{
		Rank: l.Rank, Alpha: l.Alpha, Targets: l.Targets,
		TrainEmbed: slices.Contains(l.Trainable, "embed"), TrainNorm: slices.Contains(l.Trainable, "norm"),
	}
}

// tokenCacheDir is data.token_cache as a folder: "" is the user's cache
// folder's torus/tokens (none where there is no such folder), off is none.
func tokenCacheDir(v string) string {
	switch v {
	case "off":
		return ""
	case "":
		dir, err := data.DefaultTokenCacheDir()
		if err != nil {
			return ""
		}
		return dir
	}
	return v
}
