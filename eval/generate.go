package eval

import (
	"context"
	"errors"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// GenerateConfig says how Generate continues a prompt.
type GenerateConfig struct {
	MaxTokens int // new tokens to write, >= 1
	Sampler   Sampler
	// NoCache recomputes the whole sequence for every new token instead of
	// keeping each layer's keys and values (the KV cache). Slower, and the
	// reference the cache is tested against. A model with dynamic RoPE scaling
	// always recomputes: its RoPE tables depend on the sequence's length, so
	// keys cached at a shorter length would not be the ones a full forward
	// computes.
	NoCache bool
}

// Generate continues prompt by cfg.MaxTokens tokens, calling emit with each
// as soon as it is chosen (an error from emit stops generation and is
// returned), and returns the new tokens.
//
// With the KV cache (the default) the prompt runs through the model once and
// each new token then runs alone: its query attends to the cached keys and
// values of every token before it, so a token costs the layers' work on one
// row plus attention over the sequence so far. The cache holds every layer's
// keys and values for prompt+MaxTokens tokens up front.
func (m *Model) Generate(ctx context.Context, prompt []int32, cfg GenerateConfig, emit func(int32) error) ([]int32, error) {
	if cfg.MaxTokens < 1 {
		return nil, fmt.Errorf("eval: max tokens must be >= 1, got %d", cfg.MaxTokens)
	}
	if err := cfg.Sampler.Validate(); err != nil {
		return nil, err
	}
	if cfg.Sampler.Temperature > 0 && cfg.Sampler.RNG == nil {
		return nil, errors.New("eval: sampling at a temperature above 0 needs a random generator")
	}
	if err := m.checkTokens(prompt); err != nil {
		return nil, fmt.Errorf("%w (the prompt)", err)
	}
	var next func(ctx context.Context, tok int32) ([]float32, error)
	var logits []float32
	var err error
	if cfg.NoCache || m.Config().RopeScaling.Type == "dynamic" {
		seq := append([]int32(nil), prompt...)
		next = func(ctx context.Context, tok int32) ([]float32, error) {
			seq = append(seq, tok)
			return m.lastLogits(ctx, seq)
		}
		logits, err = m.lastLogits(ctx, seq)
	} else {
		c := m.newKVCache(len(prompt) + cfg.MaxTokens)
		next = c.step
		logits, err = c.prefill(ctx, prompt)
	}
	var out []int32
	for {
		if err != nil {
			return out, err
		}
		tok := cfg.Sampler.Next(logits)
		out = append(out, tok)
		if err := emit(tok); err != nil {
			return out, err
		}
		if len(out) == cfg.MaxTokens {
			return out, nil
		}
		logits, err = next(ctx, tok)
	}
}

// lastLogits runs the whole sequence and returns the logits of its last position.
func (m *Model) lastLogits(ctx context.Context, seq []int32) ([]float32, error) {
	h, err := m.Hidden(ctx, seq)
	if err != nil {
		return nil, err
	}
	logits, err := m.LogitsRows(h, len(seq)-1, len(seq))
	if err != nil {
		return nil, err
	}
	return Rows(logits)[0], nil
}

// kvCache holds every layer's keys and values of the tokens so far, in
// tensors [capacity, KH, Dh] whose rows past n are unused. Unused rows belong
// to another document (Doc 1) in keyTok, so the attention mask hides them, and
// the key blocks keep one shape whatever n is: nothing is compiled per token.
type kvCache struct {
	m      *Model
	k, v   []*tensors.Tensor // per layer
	keyTok model.Tokens      // positions 0..capacity-1; Doc 0 for the rows in use
	n      int               // tokens cached
}

func (m *Model) newKVCache(tokens int) *kvCache {
	c, dt := m.Config(), m.Params.DType
	capacity := padLen(tokens, m.block())
	kv := &kvCache{m: m, keyTok: model.Tokens{Pos: make([]int32, capacity), Doc: make([]int32, capacity)}}
	for i := range capacity {
		kv.keyTok.Pos[i], kv.keyTok.Doc[i] = int32(i), 1
	}
	for range c.Layers {
		kv.k = append(kv.k, host.NewZeros(dt, capacity, c.KVHeads, c.HeadDimension()))
		kv.v = append(kv.v, host.NewZeros(dt, capacity, c.KVHeads, c.HeadDimension()))
	}
	return kv
}

// prefill runs the prompt, caches its keys and values and returns the logits
// of its last position.
func (kv *kvCache) prefill(ctx context.Context, prompt []int32) ([]float32, error) {
	n := len(prompt)
	h, err := kv.m.hidden(ctx, prompt, func(l int, k, v *tensors.Tensor) {
		host.SetRows(kv.k[l], 0, host.SliceRows(k, 0, n))
		host.SetRows(kv.v[l], 0, host.SliceRows(v, 0, n))
	})
	if err != nil {
		return nil, err
	}
	for i := range n {
		kv.keyTok.Doc[i] = 0
	}
	kv.n = n
	logits, err := kv.m.LogitsRows(h, n-1, n)
	if err != nil {
		return nil, err
	}
	return Rows(logits)[0], nil
}

// step runs one new token at position n against the cache, caches its keys
// and values, and returns its logits.
func (kv *kvCache) step(ctx context.Context, tok int32) ([]float32, error) {
	m := kv.m
	p, c := m.Params, m.Config()
	if kv.n >= len(kv.keyTok.Pos) {
		return nil, fmt.Errorf("eval: KV cache full at %d tokens", kv.n)
	}
	if err := m.checkTokens([]int32{tok}); err != nil {
		return nil, err
	}
	at := kv.n
	qt := model.Tokens{Pos: []int32{int32(at)}, Doc: []int32{0}}
	kv.keyTok.Doc[at] = 0
	cos, sin := model.RopeTablesFor(c, p.DType, qt.Pos, at+1)
	attn := m.attention()
	h := host.GatherRows(p.Get("model.embed_tokens.weight"), []int32{tok}) // [1, D]
	h, err := m.layers(ctx, h, cos, sin, func(_ context.Context, l int, q, k, v *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
		host.SetRows(kv.k[l], at, k) // the token's keys and values join the cache
		host.SetRows(kv.v[l], at, v)
		f, err := attn.Begin(q, qt)
		if err != nil {
			return nil, nil, err
		}
		if err := f.Fold(kv.k[l], kv.v[l], kv.keyTok); err != nil {
			return nil, nil, err
		}
		return f.Finish()
	})
	if err != nil {
		return nil, err
	}
	kv.n++
	logits, err := m.LogitsRows(h, 0, 1)
	if err != nil {
		return nil, err
	}
	return Rows(logits)[0], nil
}
