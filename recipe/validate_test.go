package recipe_test

import (
	"errors"
	"testing"

	"github.com/torusml/torus/recipe"
)

// TestValidate checks each rule: every case is base plus a body (from line
// 5) or --set overrides, and must fail with exactly the one line want.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		body string
		sets []string
		want string
	}{
		{"empty name", "name: \"\"\n", nil, `recipe.yaml:5: name: must not be empty`},
		{"backend", "backend: tpu\n", nil, `recipe.yaml:5: backend: must be one of "auto", "cpu", "cuda", "go", got "tpu"`},
		{"vocab", "model:\n  vocab: 1\n", nil, `recipe.yaml:6: model.vocab: must be >= 2, got 1`},
		{"dim", "", []string{"model.dim=0"}, `--set model.dim=0: must be >= 1, got 0`},
		{"layers", "model: {layers: 0}\n", nil, `recipe.yaml:5: model.layers: must be >= 1, got 0`},
		{"heads", "model: {heads: 0}\n", nil, `recipe.yaml:5: model.heads: must be >= 1, got 0`},
		{"kv_heads", "model: {kv_heads: 0}\n", nil, `recipe.yaml:5: model.kv_heads: must be >= 1, got 0`},
		{"kv_heads does not divide heads", "model:\n  heads: 8\n  kv_heads: 3\n", nil,
			`recipe.yaml:7: model.kv_heads: kv_heads (3) must divide heads (8)`},
		{"heads not divisible by default kv_heads", "model:\n  heads: 6\n  dim: 384\n", nil,
			`recipe.yaml:6: model.heads: kv_heads (4) must divide heads (6)`},
		{"odd head_dim", "model: {head_dim: 63}\n", nil,
			`recipe.yaml:5: model.head_dim: must be 0 (dim/heads) or a positive even number, got 63`},
		{"negative head_dim", "model: {head_dim: -2}\n", nil,
			`recipe.yaml:5: model.head_dim: must be 0 (dim/heads) or a positive even number, got -2`},
		{"dim not divisible by heads", "model: {dim: 260}\n", nil,
			`recipe.yaml:5: model.dim: dim (260) must be divisible by heads (8) when head_dim is 0`},
		{"odd dim/heads", "model: {dim: 24}\n", nil,
			`recipe.yaml:5: model.dim: dim/heads (24/8 = 3) must be even for RoPE when head_dim is 0`},
		{"mlp_dim", "model: {mlp_dim: 0}\n", nil, `recipe.yaml:5: model.mlp_dim: must be >= 1, got 0`},
		{"rope_theta", "model: {rope_theta: 0}\n", nil, `recipe.yaml:5: model.rope_theta: must be > 0, got 0`},
		{"norm_eps", "model: {norm_eps: -1e-6}\n", nil, `recipe.yaml:5: model.norm_eps: must be > 0, got -1e-06`},
		{"dtype", "model: {dtype: float16}\n", nil,
			`recipe.yaml:5: model.dtype: must be one of "float32", "float64", "bfloat16", got "float16"`},
		{"init_std", "model: {init_std: 0}\n", nil, `recipe.yaml:5: model.init_std: must be > 0, got 0`},
		{"init_std checked with from", "model: {from: /m, init_std: -1}\n", nil,
			`recipe.yaml:5: model.init_std: must be > 0, got -1`},
		{"source type", "", []string{"data.sources.0.type=csv"},
			`--set data.sources.0.type=csv: must be one of "text_dir", "text_file", "jsonl", "sft", "parquet", "passkey", got "csv"`},
		{"source path", "", []string{"data.sources.0.path="}, `--set data.sources.0.path=: must not be empty`},
		{"source doc_per", "", []string{"data.sources.0.doc_per=line"},
			`--set data.sources.0.doc_per=line: must be one of "file", "directory", got "line"`},
		{"source include glob", "", []string{"data.sources.0.include=['[a-']"},
			`--set data.sources.0.include=['[a-']: data.sources.0.include.0: bad glob "[a-": syntax error in pattern`},
		{"source without type", "", []string{"data.sources.1.path=/x"},
			`--set data.sources.1.path=/x: data.sources.1.type: must be one of "text_dir", "text_file", "jsonl", "sft", "parquet", "passkey", got ""`},
		{"column on text_dir", "", []string{"data.sources.0.column=body"},
			`--set data.sources.0.column=body: is for parquet sources, not text_dir`},
		{"chat_template on text_dir", "", []string{"data.sources.0.chat_template=/m"},
			`--set data.sources.0.chat_template=/m: is for sft sources, not text_dir`},
		{"tokenizer", "", []string{"data.tokenizer=bpe"},
			`--set data.tokenizer=bpe: must be "byte", "from_model", or a tokenizer.json or a model folder holding one, got "bpe"`},
		{"tokenizer from_model without model.from", "", []string{"data.tokenizer=from_model"},
			`--set data.tokenizer=from_model: from_model needs model.from: the model folder whose tokenizer.json to use`},
		{"seq_len 1", "", []string{"data.seq_len=1"}, `--set data.seq_len=1: must be >= 2, got 1`},
		{"workers", "parallel:\n  workers: 0\n", nil,
			`recipe.yaml:6: parallel.workers: must be >= 1, got 0`},
		{"dp x sp", "parallel:\n  workers: 4\n  sp: 3\n", nil,
			`recipe.yaml:7: parallel.sp: dp (1) * sp (3) must equal workers (4)`},
		{"ulysses heads", "parallel:\n  workers: 16\n  strategy: ulysses\n", nil,
			`recipe.yaml:7: parallel.strategy: ulysses needs heads (8) divisible by sp (16); use ring, or another sp`},
		{"ulysses kv_heads", "model: {heads: 6, kv_heads: 3, dim: 192}\nparallel:\n  workers: 2\n  strategy: ulysses\n", nil,
			`recipe.yaml:8: parallel.strategy: ulysses needs kv_heads (3) divisible by sp (2), or sp a multiple of kv_heads (each key/value head then replicated on 2/kv_heads ranks); use ring, or another sp`},
		{"hybrid degrees", "parallel:\n  workers: 8\n  ulysses: 2\n  ring: 2\n", nil,
			`recipe.yaml:7: parallel.ulysses: ulysses (2) x ring (2) = 4, but sp = 8`},
		{"hybrid ulysses divides", "parallel:\n  workers: 8\n  ulysses: 3\n", nil,
			`recipe.yaml:7: parallel.ulysses: must divide sp (8), got 3`},
		{"hybrid heads", "parallel:\n  workers: 16\n  ring: 1\n", nil,
			`recipe.yaml:7: parallel.ring: ulysses needs heads (8) divisible by the ulysses degree (16); use ring, or another sp`},
		{"recompute", "memory: {recompute: none}\n", nil,
			`recipe.yaml:5: memory.recompute: must be one of "layer", "except_attention", got "none"`},
		{"offload", "memory: {offload: nvme}\n", nil,
			`recipe.yaml:5: memory.offload: must be one of "none", "host", "disk", got "nvme"`},
		{"attn_block_q", "memory: {attn_block_q: 0}\n", nil, `recipe.yaml:5: memory.attn_block_q: must be >= 1, got 0`},
		{"attn_block_k", "memory: {attn_block_k: -1}\n", nil, `recipe.yaml:5: memory.attn_block_k: must be >= 1, got -1`},
		{"negative lr", "optim:\n  lr: -0.1\n", nil, `recipe.yaml:6: optim.lr: must be > 0, got -0.1`},
		{"zero lr", "", []string{"optim.lr=0"}, `--set optim.lr=0: must be > 0, got 0`},
		{"infinite lr", "optim: {lr: .inf}\n", nil, `recipe.yaml:5: optim.lr: must be a finite number, got +Inf`},
		{"NaN lr", "optim: {lr: .nan}\n", nil, `recipe.yaml:5: optim.lr: must be a finite number, got NaN`},
		{"beta1 1", "optim: {beta1: 1}\n", nil, `recipe.yaml:5: optim.beta1: must be in [0, 1), got 1`},
		{"beta2 negative", "optim: {beta2: -0.5}\n", nil, `recipe.yaml:5: optim.beta2: must be in [0, 1), got -0.5`},
		{"eps", "optim: {eps: 0}\n", nil, `recipe.yaml:5: optim.eps: must be > 0, got 0`},
		{"weight_decay", "optim: {weight_decay: -0.1}\n", nil, `recipe.yaml:5: optim.weight_decay: must be >= 0, got -0.1`},
		{"max_grad_norm", "optim: {max_grad_norm: -1}\n", nil, `recipe.yaml:5: optim.max_grad_norm: must be >= 0, got -1`},
		{"steps", "schedule: {steps: 0, warmup_steps: 0}\n", nil, `recipe.yaml:5: schedule.steps: must be >= 1, got 0`},
		{"negative warmup", "schedule: {warmup_steps: -1}\n", nil,
			`recipe.yaml:5: schedule.warmup_steps: must be >= 0, got -1`},
		{"negative warmup past steps", "schedule: {steps: 5, warmup_steps: -1}\n", nil,
			`recipe.yaml:5: schedule.warmup_steps: must be >= 0, got -1`},
		{"decay", "schedule: {decay: step}\n", nil,
			`recipe.yaml:5: schedule.decay: must be one of "cosine", "linear", "constant", got "step"`},
		{"min_lr_ratio", "schedule: {min_lr_ratio: 1.5}\n", nil, `recipe.yaml:5: schedule.min_lr_ratio: must be in [0, 1], got 1.5`},
		{"grad_accum", "schedule: {grad_accum: 0}\n", nil, `recipe.yaml:5: schedule.grad_accum: must be >= 1, got 0`},
		{"log every", "log: {every: 0}\n", nil, `recipe.yaml:5: log.every: must be >= 1, got 0`},
		{"checkpoint every", "checkpoint: {every_steps: -1}\n", nil, `recipe.yaml:5: checkpoint.every_steps: must be >= 0, got -1`},
		{"checkpoint keep", "checkpoint:\n  keep_last: -2\n", nil, `recipe.yaml:6: checkpoint.keep_last: must be >= 0, got -2`},
		{"lora rank 0", "lora: {rank: 0}\n", nil, `recipe.yaml:5: lora.rank: must be >= 1 (leave lora out to train every weight), got 0`},
		{"lora keys without rank", "lora:\n  alpha: 8\n", nil, `(default): lora.rank: must be set (>= 1) to use the other lora keys (lora.alpha is set)`},
		{"lora unknown target", "lora:\n  rank: 4\n  targets: [q, qkv]\n", nil,
			`recipe.yaml:7: lora.targets.1: there is no "qkv": must be one of q, k, v, o, gate, up, down`},
		{"lora misspelt target", "lora:\n  rank: 4\n  targets: [gates]\n", nil,
			`recipe.yaml:7: lora.targets.0: there is no "gates": must be one of q, k, v, o, gate, up, down (did you mean "gate"?)`},
		{"lora no targets", "lora:\n  rank: 4\n  targets: []\n", nil, `recipe.yaml:7: lora.targets: must name at least one of q, k, v, o, gate, up, down`},
		{"lora trainable", "lora: {rank: 4, trainable: [lm_head]}\n", nil,
			`recipe.yaml:5: lora.trainable.0: there is no "lm_head": must be one of embed, norm`},
		{"lora dropout", "lora: {rank: 4, dropout: 1}\n", nil, `recipe.yaml:5: lora.dropout: must be in [0, 1), got 1`},
		{"absurd layers", "model: {layers: 1000000000}\n", nil, `recipe.yaml:5: model.layers: must be <= 1024, got 1000000000`},
		{"absurd seq_len", "", []string{"data.seq_len=100000000000"}, `--set data.seq_len=100000000000: must be <= 134217728, got 100000000000`},
		{"zero 3", "parallel: {zero: 3}\n", nil, `recipe.yaml:5: parallel.zero: stage 3 (sharded gradients and weights) is not built yet: 0 or 1`},
		{"zero 7", "parallel: {zero: 7}\n", nil, `recipe.yaml:5: parallel.zero: must be 0 or 1, got 7`},
		{"eval_every without heldout", "log: {eval_every: 10}\n", nil, `recipe.yaml:5: log.eval_every: eval_every 10 needs held-out documents: set data.heldout >= 1`},
		{"on_nonfinite", "optim: {on_nonfinite: ignore}\n", nil, `recipe.yaml:5: optim.on_nonfinite: must be one of "stop", "skip", got "ignore"`},
		{"lora base dtype", "lora: {rank: 4, base_dtype: bfloat16}\n", nil, `recipe.yaml:5: lora.base_dtype: must be one of "stored", "master", got "bfloat16"`},
		{"rope_scaling type", "model:\n  rope_scaling: {type: ntk, factor: 4}\n", nil,
			`recipe.yaml:6: model.rope_scaling.type: must be one of "none", "linear", "dynamic", "yarn", "llama3", got "ntk"`},
		{"rope_scaling factor", "model:\n  rope_scaling: {type: linear, factor: 0.5}\n", nil,
			`recipe.yaml:6: model.rope_scaling.factor: must be >= 1 (how many times longer the context gets), got 0.5`},
		{"shift_groups odd", "attention: {shift_groups: 7}\n", nil,
			`recipe.yaml:5: attention.shift_groups: must be 0 (full attention) or an even group size >= 2, got 7`},
		{"passkey count", "", []string{"data.sources.0.type=passkey"}, `recipe.yaml:3: data.sources.0.count: must be >= 1, got 0`},
		{"passkey key_digits", "", []string{"data.sources.0.type=passkey", "data.sources.0.count=5", "data.sources.0.key_digits=65"},
			`--set data.sources.0.key_digits=65: must be at most 64, got 65`},
		{"log progress", "log: {progress: fancy}\n", nil,
			`recipe.yaml:5: log.progress: must be one of "auto", "bar", "plain", "none", got "fancy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := recipe.Parse("recipe.yaml", []byte(base+tt.body), tt.sets)
			if err == nil {
				t.Fatalf("Parse succeeded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse error:\n got %s\nwant %s", err, tt.want)
			}
			var ps recipe.Problems
			if !errors.As(err, &ps) || len(ps) != 1 {
				t.Fatalf("error is not one Problem: %#v", err)
			}
		})
	}
}

// TestCapWarmup: schedule.warmup_steps past schedule.steps is let through by
// Validate and capped by Cap, with one warning naming where it came from;
// within range nothing changes.
func TestCapWarmup(t *testing.T) {
	for _, tt := range []struct {
		name   string
		body   string
		sets   []string
		warmup int    // after Cap
		want   string // the warning; "" for none
	}{
		{"default past steps", "schedule: {steps: 50}\n", nil, 50,
			`(default): schedule.warmup_steps: 100 is past schedule.steps (50): capped to 50, so the learning rate warms up over the whole run`},
		{"file past steps", "schedule:\n  steps: 20\n  warmup_steps: 300\n", nil, 20,
			`recipe.yaml:7: schedule.warmup_steps: 300 is past schedule.steps (20): capped to 20, so the learning rate warms up over the whole run`},
		{"set past steps", "", []string{"schedule.steps=10", "schedule.warmup_steps=11"}, 10,
			`--set schedule.warmup_steps=11: 11 is past schedule.steps (10): capped to 10, so the learning rate warms up over the whole run`},
		{"equal to steps", "schedule: {steps: 100}\n", nil, 100, ""},
		{"within steps", "schedule: {steps: 1000, warmup_steps: 10}\n", nil, 10, ""},
		{"zero", "schedule: {warmup_steps: 0}\n", nil, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := recipe.Parse("recipe.yaml", []byte(base+tt.body), tt.sets)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			warns := r.Cap()
			if got := warns.Error(); got != tt.want {
				t.Errorf("warnings:\n%s\nwant\n%s", got, tt.want)
			}
			if r.Schedule.WarmupSteps != tt.warmup {
				t.Errorf("warmup_steps %d after Cap, want %d", r.Schedule.WarmupSteps, tt.warmup)
			}
			if err := r.Validate(); err != nil {
				t.Errorf("Validate after Cap: %v", err)
			}
			if again := r.Cap(); len(again) != 0 {
				t.Errorf("a second Cap warned again: %v", again)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	src := `optim:
  lr: -1
data:
  seq_len: 1
`
	_, err := recipe.Parse("r.yaml", []byte(src), []string{"log.every=0"})
	want := `(default): data.sources: at least one source is needed, e.g. [{type: text_dir, path: ./corpus}]
r.yaml:4: data.seq_len: must be >= 2, got 1
r.yaml:2: optim.lr: must be > 0, got -1
--set log.every=0: must be >= 1, got 0`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error:\n%v\nwant\n%s", err, want)
	}
}

func TestValidateInCode(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*recipe.Recipe)
		want   string
	}{
		{"negative lr", func(r *recipe.Recipe) { r.Optim.LR = -0.1 }, "optim.lr: must be > 0, got -0.1"},
		{"jsonl without field", func(r *recipe.Recipe) { r.Data.Sources[0].Type = "jsonl" },
			"data.sources.0.field: must name the text field of a jsonl source"},
		{"parquet without column", func(r *recipe.Recipe) { r.Data.Sources[0].Type = "parquet" },
			"data.sources.0.column: must name the text column of a parquet source"},
		{"chat template from the model", func(r *recipe.Recipe) {
			r.Model.From = "/models/x"
			r.Data.Sources[0] = recipe.SourceConfig{Type: "sft", Path: "/chat.jsonl", ChatTemplate: recipe.ChatTemplateFromModel}
		}, ""},
		{"from skips the shape", func(r *recipe.Recipe) {
			r.Model.From = "/models/x"
			r.Model.Vocab, r.Model.Heads, r.Model.Dim = 0, 0, 0
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := withSource()
			tt.modify(&r)
			err := r.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			// Built in code, there is no file line nor "(default)".
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestValidateSourceKeys checks the keys of one source type in a whole
// file: each problem at the line of its key, every one reported.
func TestValidateSourceKeys(t *testing.T) {
	src := `data:
  sources:
    - type: parquet
      path: /hf/data
      include: ["train-*.parquet"]
    - type: jsonl
      path: /a.jsonl.zst
      column: body
    - type: text_dir
      path: /x
      chat_template: /m/tokenizer_config.json
    - type: sft
      path: /chat.jsonl.gz
      chat_template: from_model
`
	_, err := recipe.Parse("r.yaml", []byte(src), nil)
	want := `r.yaml:8: data.sources.1.column: is for parquet sources, not jsonl (a jsonl source names its text with field)
r.yaml:11: data.sources.2.chat_template: is for sft sources, not text_dir
r.yaml:14: data.sources.3.chat_template: from_model needs model.from: the model folder whose chat template to use`
	if err == nil || err.Error() != want {
		t.Fatalf("Parse error:\n%v\nwant\n%s", err, want)
	}

	ok := `model:
  from: /models/qwen
data:
  sources:
    - type: parquet
      path: /hf/data
    - type: parquet
      path: /hf/other.parquet
      column: content
    - type: sft
      path: /chat.jsonl.zst
      chat_template: from_model
    - type: sft
      path: /chat2.jsonl
      chat_template: /models/llama/tokenizer_config.json
`
	r, err := recipe.Parse("ok.yaml", []byte(ok), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Data.Sources[0].Column; got != "text" {
		t.Errorf("parquet column defaults to %q, want \"text\"", got)
	}
	if got := r.Data.Sources[1].Column; got != "content" {
		t.Errorf("parquet column %q, want \"content\"", got)
	}
	// The resolved form reads back the same.
	y, err := r.YAML()
	if err != nil {
		t.Fatal(err)
	}
	back, err := recipe.Parse("resolved.yaml", y, nil)
	if err != nil {
		t.Fatalf("resolved YAML does not parse: %v\n%s", err, y)
	}
	if !sameValues(r, back) {
		t.Errorf("resolved YAML reads back differently:\n%s", y)
	}
}
