package recipe

import "github.com/torusml/torus/parallel"

// Recipe is one training run, as written in YAML. Every field has a default
// (see Default); unknown keys are errors. Field tags are the YAML keys.
type Recipe struct {
	Name       string           `yaml:"name"`
	Seed       int64            `yaml:"seed"`
	Backend    string           `yaml:"backend"` // auto | cpu | cuda (go: the old name of cpu)
	Model      ModelConfig      `yaml:"model"`
	Data       DataConfig       `yaml:"data"`
	Parallel   ParallelConfig   `yaml:"parallel"`
	Memory     MemoryConfig     `yaml:"memory"`
	Optim      OptimConfig      `yaml:"optim"`
	Schedule   ScheduleConfig   `yaml:"schedule"`
	Attention  AttentionConfig  `yaml:"attention"`
	LoRA       LoRAConfig       `yaml:"lora"`
	Checkpoint CheckpointConfig `yaml:"checkpoint"`
	Launch     LaunchConfig     `yaml:"launch"`
	Log        LogConfig        `yaml:"log"`

	// origins says where each dotted key got its value: a file line or a
	// --set. Parse fills it; it is nil for a Recipe built in code, and it
	// is not updated when fields are changed in code after Parse.
	origins map[string]origin `yaml:"-"`
}

// ModelConfig is the architecture, or `from:` a Hugging Face folder.
type ModelConfig struct {
	From          string  `yaml:"from"`     // Hugging Face folder (config.json + model.safetensors); overrides the shape keys
	Vocab         int     `yaml:"vocab"`    // vocabulary size
	Dim           int     `yaml:"dim"`      // hidden size
	Layers        int     `yaml:"layers"`   // decoder layers
	Heads         int     `yaml:"heads"`    // query heads
	KVHeads       int     `yaml:"kv_heads"` // key/value heads (GQA); must divide heads
	HeadDim       int     `yaml:"head_dim"` // 0: dim/heads
	MLPDim        int     `yaml:"mlp_dim"`  // SwiGLU inner width
	RopeTheta     float64 `yaml:"rope_theta"`
	NormEps       float64 `yaml:"norm_eps"`
	TieEmbeddings bool    `yaml:"tie_embeddings"`
	DType         string  `yaml:"dtype"`    // float32 | float64 | bfloat16 (mixed precision: bf16 compute, float32 master weights and optimizer state)
	InitStd       float64 `yaml:"init_std"` // standard deviation of the initial weights
	// RopeScaling stretches RoPE to longer contexts, as Hugging Face's
	// rope_scaling; with from, it replaces the folder's.
	RopeScaling RopeScalingConfig `yaml:"rope_scaling"`
}

// RopeScalingConfig is Hugging Face's rope_scaling. Type none leaves RoPE as trained.
type RopeScalingConfig struct {
	Type                 string  `yaml:"type"`                             // none | linear (position interpolation) | dynamic (NTK) | yarn | llama3
	Factor               float64 `yaml:"factor"`                           // context growth, > 1 (linear, dynamic, yarn, llama3)
	OriginalMaxPositions int     `yaml:"original_max_position_embeddings"` // the context the model was trained at (dynamic, yarn, llama3; 0: model.max_positions or data.seq_len / factor)
	LowFreqFactor        float64 `yaml:"low_freq_factor"`                  // llama3
	HighFreqFactor       float64 `yaml:"high_freq_factor"`                 // llama3
	BetaFast             float64 `yaml:"beta_fast"`                        // yarn
	BetaSlow             float64 `yaml:"beta_slow"`                        // yarn
	AttentionFactor      float64 `yaml:"attention_factor"`                 // yarn: 0 means 0.1*ln(factor)+1
}

// AttentionConfig is how attention is restricted during training.
type AttentionConfig struct {
	// ShiftGroups is LongLoRA's shifted sparse attention: during training each
	// token attends only within its group of G positions of its document, half
	// of the heads with the groups shifted by G/2. 0: full attention. Evaluation
	// and generation always use full attention.
	ShiftGroups int `yaml:"shift_groups"`
	// Kernel: auto (cuDNN's fused flash attention on a CUDA GPU in bfloat16,
	// wherever the mask is plain causal: one document over the sequence on one
	// worker; blockwise elsewhere) or blockwise (always torus's own kernels).
	Kernel string `yaml:"kernel"`
}

// LoRAConfig freezes the base weights and trains low-rank adapters
// W + (alpha/rank) B A on the targeted projections.
type LoRAConfig struct {
	Rank      int      `yaml:"rank"`      // 0: no adapters, every weight trains
	Alpha     float64  `yaml:"alpha"`     // the adapters' scale is alpha/rank
	Dropout   float64  `yaml:"dropout"`   // dropout on the adapters' input, in [0, 1)
	Targets   []string `yaml:"targets"`   // any of q, k, v, o, gate, up, down
	Trainable []string `yaml:"trainable"` // base weights that train anyway: embed, norm (LongLoRA needs both to extend the context)
	// BaseDType is how the frozen base weights are held: stored (in the
	// dtype of model.from's files, bfloat16 for most releases: half the
	// memory of float32, widened a layer at a time, the same results) or
	// master (converted to the master weights' dtype once, at load).
	BaseDType string `yaml:"base_dtype"`
}

// DataConfig is where tokens come from and how they are packed.
type DataConfig struct {
	Sources []SourceConfig `yaml:"sources"`
	// Tokenizer is byte (a token per byte), from_model (the tokenizer.json of
	// model.from: the default when it has one), or a tokenizer.json or a
	// model folder holding one.
	Tokenizer string `yaml:"tokenizer"`
	// TokenCache is where token ids are kept between runs, keyed by the
	// tokenizer and each document's text: "" (the user's cache folder,
	// torus/tokens), off, or a folder.
	TokenCache string `yaml:"token_cache"`
	SeqLen     int    `yaml:"seq_len"` // tokens per sequence
	Shuffle    bool   `yaml:"shuffle"` // shuffle documents each epoch (seeded by the recipe seed)
	// Interleave is how many documents are read side by side: consecutive sequences
	// come from different documents, so long documents do not fill whole stretches
	// of training with one source. 1: documents strictly one after another.
	Interleave int `yaml:"interleave"`
	// Pack is how documents fill sequences: split (a document goes on in the
	// next sequence where one ends) or whole (a document of at most seq_len
	// tokens is never cut: the rest of a sequence it does not fit in is
	// padding, without loss). whole suits tasks that need the whole document,
	// as passkey samples do.
	Pack string `yaml:"pack"`
	// Heldout is how many documents (chosen by the seed) are set aside from
	// training for torus eval --task ppl. 0: none.
	Heldout int `yaml:"heldout"`
}

// SourceConfig is one data source.
type SourceConfig struct {
	Type    string   `yaml:"type"`    // text_dir | text_file | jsonl | sft (JSONL of prompt/response or messages: loss on responses only) | parquet (a file or folder of shards, a row a document) | passkey (synthetic retrieval samples)
	Path    string   `yaml:"path"`    // $VARS are expanded; $GOROOT falls back to `go env GOROOT`; jsonl, sft: *.gz and *.zst are decompressed
	Include []string `yaml:"include"` // text_dir, parquet folder: file-name globs (default: all files; parquet: *.parquet)
	Exclude []string `yaml:"exclude"` // text_dir: directory-name globs skipped at any depth (testdata and hidden ones always are)
	DocPer  string   `yaml:"doc_per"` // text_dir: file | directory (the files of each directory concatenated)
	Field   string   `yaml:"field"`   // jsonl: the text field (default "text")
	Column  string   `yaml:"column"`  // parquet: the string column (default "text")
	Count   int      `yaml:"count"`   // passkey: how many samples
	MinLen  int      `yaml:"min_len"` // passkey: shortest sample in tokens (0: data.seq_len)
	MaxLen  int      `yaml:"max_len"` // passkey: longest sample in tokens (0: data.seq_len)
	// KeyDigits is the passkey's length in digits (0: 5, the evaluation's).
	// Longer keys in training give the copying circuit retrieval rests on
	// more to learn from per sample; torus eval always asks for five.
	KeyDigits int `yaml:"key_digits"`
	// ChatTemplate, for sft: render conversations with a Hugging Face chat
	// template, the loss on the assistant turns: a tokenizer_config.json, a
	// .jinja file or a model folder, or from_model (model.from's template).
	// Empty: the fixed "### Role:" template.
	ChatTemplate string `yaml:"chat_template"`
}

// ParallelConfig is the worker layout: workers = dp x sp.
type ParallelConfig struct {
	Workers  int    `yaml:"workers"`  // worker processes (on this machine with torus train)
	SP       int    `yaml:"sp"`       // sequence-parallel degree: ranks sharing each sequence (0: workers/dp)
	DP       int    `yaml:"dp"`       // data-parallel degree: groups reading different sequences
	Strategy string `yaml:"strategy"` // ring | ulysses (needs heads % sp == 0, and kv_heads % sp == 0 or sp % kv_heads == 0)
	// Balance: adaptive lets a ring rank that runs slower hand query blocks to
	// the next rank (the results are bitwise the same); off keeps every rank on
	// its own queries.
	Balance string `yaml:"balance"`
	// Zero is the ZeRO stage: 0 keeps the AdamW moments whole on every
	// worker; 1 splits them over all the workers (each updates its share of
	// every weight, then the shares are gathered: the same weights, 1/workers
	// of the optimizer memory). Stages 2 and 3 are not built yet.
	Zero int `yaml:"zero"`
	// Ulysses and Ring are hybrid sequence parallelism's degrees, sp =
	// ulysses x ring: Ulysses' all-to-all inside groups of ulysses
	// neighbouring ranks, the ring across the groups. 0: from the other, or
	// from strategy (ulysses: all Ulysses; ring: all ring).
	Ulysses int `yaml:"ulysses"`
	Ring    int `yaml:"ring"`
}

// MemoryConfig is how activations are kept and how attention is blocked.
type MemoryConfig struct {
	Recompute  string `yaml:"recompute"`    // layer: keep only layer inputs, recompute the inside in backward; except_attention: also keep attention output and lse, recompute only projections and MLP
	Offload    string `yaml:"offload"`      // none | host (CPU backend: where activations already are) | disk: spill stored activations to RUN/offload, read back ahead of backward
	LimitMiB   int    `yaml:"limit_mib"`    // soft limit on each worker's memory: the garbage collector works harder near it (0: none; Go's heap otherwise grows to about twice what is live)
	AttnBlockQ int    `yaml:"attn_block_q"` // query block length of blockwise attention
	AttnBlockK int    `yaml:"attn_block_k"` // key block length of blockwise attention
	LossChunk  int    `yaml:"loss_chunk"`   // the head's loss and gradient this many tokens at a time: [loss_chunk, vocab] logits at most (0: all at once)
}

// OptimConfig is AdamW with clipping.
type OptimConfig struct {
	LR              float64 `yaml:"lr"`
	Beta1           float64 `yaml:"beta1"`
	Beta2           float64 `yaml:"beta2"`
	Eps             float64 `yaml:"eps"`
	WeightDecay     float64 `yaml:"weight_decay"`
	MaxGradNorm     float64 `yaml:"max_grad_norm"`    // 0: no clipping
	DecayNorms      bool    `yaml:"decay_norms"`      // apply weight decay to norm weights too
	DecayEmbeddings bool    `yaml:"decay_embeddings"` // apply weight decay to the embedding too
	// OnNonFinite is what a step whose loss or gradient norm is NaN or
	// infinite does: stop (the run ends naming the step; nothing of it is
	// applied or checkpointed) or skip (its update is dropped and counted;
	// more than NonFiniteLimit in a row stop the run).
	OnNonFinite    string `yaml:"on_nonfinite"`
	NonFiniteLimit int    `yaml:"nonfinite_limit"`
}

// ScheduleConfig is how long to train and how the learning rate moves.
type ScheduleConfig struct {
	Steps       int     `yaml:"steps"`
	WarmupSteps int     `yaml:"warmup_steps"`
	Decay       string  `yaml:"decay"`        // cosine | linear | constant
	MinLRRatio  float64 `yaml:"min_lr_ratio"` // final lr as a fraction of optim.lr
	GradAccum   int     `yaml:"grad_accum"`   // micro-batches (sequences) per optimizer step
}

// CheckpointConfig is when checkpoints are written into RUN/ckpt and which are kept.
type CheckpointConfig struct {
	EverySteps int `yaml:"every_steps"` // write one every N steps, and at the end (0: never)
	KeepLast   int `yaml:"keep_last"`   // keep the newest N (0: all)
	KeepEvery  int `yaml:"keep_every"`  // and keep for good those whose step is a multiple of N (0: none extra)
}

// LaunchConfig is how torus launch handles failures across machines.
type LaunchConfig struct {
	MaxRestarts int `yaml:"max_restarts"` // times a failed job restarts from its latest checkpoint (0: never)
}

// LogConfig is what training prints.
type LogConfig struct {
	Every    int    `yaml:"every"`    // print a line every N steps (the live line updates every step)
	Progress string `yaml:"progress"` // auto | bar | plain | none
	// TensorBoard writes each step's scalars (loss, lr, grad_norm,
	// tokens_per_s, eval_loss) as TensorBoard event files in RUN/tensorboard/.
	TensorBoard bool `yaml:"tensorboard"`
	// EvalEvery > 0 computes the loss on held-out documents (data.heldout)
	// every EvalEvery steps and at the last: the first EvalBatches sequences
	// of them, the same each time, into metrics.jsonl (eval_loss) and the
	// progress line.
	EvalEvery   int `yaml:"eval_every"`
	EvalBatches int `yaml:"eval_batches"`
}

// Topology is the recipe's parallel layout with the shapes that constrain it;
// its Mesh method checks and builds it, for the recipe's validation and for
// every command that starts or plans workers.
func (r Recipe) Topology() parallel.Topology {
	h, kv := r.Model.Heads, r.Model.KVHeads
	if r.Model.From != "" {
		h, kv = 0, 0 // the model folder's config.json says, once it is read
	}
	p := r.Parallel
	return parallel.Topology{Workers: p.Workers, DP: p.DP, SP: p.SP, Strategy: p.Strategy, SeqLen: r.Data.SeqLen, Heads: h, KVHeads: kv,
		Ulysses: p.Ulysses, Ring: p.Ring}
}

// TokenizerFromModel is the data.tokenizer value that takes model.from's.
const TokenizerFromModel = "from_model"

// TokenizerSpec is data.tokenizer as a path or "byte": from_model resolved to
// model.from.
func (r Recipe) TokenizerSpec() string {
	if r.Data.Tokenizer == TokenizerFromModel {
		return r.Model.From
	}
	return r.Data.Tokenizer
}
