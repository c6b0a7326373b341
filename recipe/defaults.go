package recipe

// Default is the recipe every file is decoded over: each key a recipe leaves
// out takes the value here. It has no data sources, so it does not validate
// on its own; per-source defaults are filled by fillSourceDefaults.
func Default() Recipe {
	return Recipe{
		Name:    "run",
		Seed:    1,
		Backend: "auto",
		Model: ModelConfig{
			Vocab:     256, // the byte tokenizer
			Dim:       256,
			Layers:    4,
			Heads:     8,
			KVHeads:   4,
			HeadDim:   0, // dim/heads
			MLPDim:    688,
			RopeTheta: 10000,
			NormEps:   1e-5,
			DType:     "float32",
			InitStd:   0.02,
			RopeScaling: RopeScalingConfig{
				Type:           "none",
				LowFreqFactor:  1,
				HighFreqFactor: 4,
				BetaFast:       32,
				BetaSlow:       1,
			},
		},
		Data: DataConfig{
			Tokenizer:  "byte",
			SeqLen:     1024,
			Shuffle:    true,
			Interleave: 8,
			Pack:       "split",
		},
		Attention: AttentionConfig{Kernel: "auto"},
		Parallel:  ParallelConfig{Workers: 1, SP: 0, DP: 1, Strategy: "ring", Balance: "adaptive"},
		Memory: MemoryConfig{
			Recompute:  "layer",
			Offload:    "none",
			AttnBlockQ: 256,
			AttnBlockK: 256,
			LossChunk:  2048,
		},
		Optim: OptimConfig{
			LR:          3e-4,
			Beta1:       0.9,
			Beta2:       0.95,
			Eps:         1e-8,
			WeightDecay: 0.1,
			MaxGradNorm: 1.0,
			OnNonFinite: "stop", NonFiniteLimit: 5,
		},
		Schedule: ScheduleConfig{
			Steps:       1000,
			WarmupSteps: 100,
			Decay:       "cosine",
			MinLRRatio:  0.1,
			GradAccum:   1,
		},
		LoRA:       LoRAConfig{Alpha: 16, Targets: []string{"q", "k", "v", "o"}, BaseDType: "stored"},
		Checkpoint: CheckpointConfig{EverySteps: 100, KeepLast: 2},
		Launch:     LaunchConfig{MaxRestarts: 3},
		Log:        LogConfig{Every: 10, Progress: "auto", EvalBatches: 8},
	}
}

// fillSourceDefaults gives each source the defaults of its type. It runs
// after the file and every --set, so a source's type is final by then.
// fillTokenizerDefault makes data.tokenizer from_model where the recipe does
// not set it and model.from has a tokenizer.json: a real model's ids, not bytes.
func fillTokenizerDefault(r *Recipe) {
	if _, set := r.origins["data.tokenizer"]; !set && r.Model.From != "" && hasTokenizerJSON(r.Model.From) {
		r.Data.Tokenizer = TokenizerFromModel
	}
}

func fillSourceDefaults(r *Recipe) {
	for i := range r.Data.Sources {
		s := &r.Data.Sources[i]
		switch s.Type {
		case "jsonl":
			if s.Field == "" {
				s.Field = "text"
			}
		case "parquet":
			if s.Column == "" {
				s.Column = "text"
			}
		case "text_dir":
			if s.DocPer == "" {
				s.DocPer = "file"
			}
		}
	}
}
