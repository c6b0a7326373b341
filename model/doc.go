// Package model is the LLaMA-family decoder as small compiled GoMLX graph pieces,
// the single-worker math only: the trainer calls them in order and decides what
// is stored, recomputed or exchanged between them. The family covers Llama,
// Mistral without sliding window, and Qwen2 (Qwen2.5): a Llama whose q, k and v
// projections have biases (Config.QKVBias; Llama's attention_bias adds o's, OBias).
//
// Pieces (one set per model configuration, each compiled once per shape and dtype):
//
//	PreAttn       h [L, D] -> q [L, H, Dh], k, v [L, KH, Dh]      RMSNorm, projections (+ biases), RoPE
//	PostAttn      h, o [L, H*Dh] -> next h                         o_proj (+ bias), residual, RMSNorm, SwiGLU
//	Head          h -> sum(weight * cross-entropy) * scale
//	Logits        h -> logits [L, V]                               final norm, output projection
//	AttnBlock     one (query block, key block) pair of the online softmax
//	AttnBlockGrad its backward; PreAttnVJP, PostAttnVJP, HeadVJP the others'
//
// LayerForward is one decoder layer's forward, PreAttn, attention and PostAttn,
// with the layer's weights and its attention (model.Attend) from the caller: the
// trainer's (LoRA merged, ring or Ulysses) and eval's (local, or the KV cache).
//
// BlockAttention runs the blocks of one worker's tokens (no [L, L] tensor is
// ever made); parallel.RingAttention folds in blocks visiting from other workers
// with the same Begin/Fold/Finish. Parameters carry Hugging Face names and
// layouts: LoadHF reads a Hugging Face model folder, ExportHF writes one
// (config.json, generation_config.json, model.safetensors or shards and index).
// RoPE's cos and sin tables are made on the host (RopeTablesFor), with Hugging
// Face's rope_scaling (linear, dynamic, yarn, llama3) when Config.RopeScaling sets one.
//
//	p, _ := model.Init(cfg, dtypes.Float32, 0.02, seed)
//	pieces, _ := model.NewPieces(backend, cfg)
//	q, k, v, _ := pieces.PreAttn(p.Layer(0), h, cos, sin)
package model
