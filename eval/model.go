package eval

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

// DefaultBlock is the attention block size (queries and keys) of a Model.
const DefaultBlock = 512

// minPad is the shortest length a sequence is padded to (see padLen).
const minPad = 16

// Model is a model ready to evaluate: its parameters and compiled pieces. It
// runs one sequence at a time as one document at positions 0..L-1.
//
// A sequence is padded at its end (with token 0) to a length from a small set
// (padLen): every new length compiles every piece again, which at a few
// thousand tokens costs seconds, so evaluating documents of many lengths would
// otherwise spend most of its time compiling. Causal attention keeps the
// padding from the real tokens, so their results are those of the unpadded
// sequence; the RoPE tables are computed for the real length.
type Model struct {
	Params *model.Params
	Pieces *model.Pieces
	Block  int // attention block size; 0: DefaultBlock
}

// Load reads a model folder (a checkpoint folder or a Hugging Face folder, with
// any LoRA adapters merged: model.LoadInference) in float32.
func Load(dir string, backend compute.Backend) (*Model, error) {
	p, err := model.LoadInference(dir, dtypes.Float32)
	if err != nil {
		return nil, fmt.Errorf("eval: load %s: %w", dir, err)
	}
	return New(p, backend)
}

// New builds the pieces for parameters already in memory.
func New(p *model.Params, backend compute.Backend) (*Model, error) {
	pieces, err := model.NewPieces(backend, p.Config)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	return &Model{Params: p, Pieces: pieces}, nil
}

// Config is the model's architecture.
func (m *Model) Config() model.Config { return m.Params.Config }

func (m *Model) block() int {
	if m.Block > 0 {
		return m.Block
	}
	return DefaultBlock
}

func (m *Model) attention() *model.BlockAttention {
	return &model.BlockAttention{P: m.Pieces, BlockQ: m.block(), BlockK: m.block()}
}

// padLen is the length a sequence of n tokens runs at: the next power of two
// (at least minPad) up to the block size, then the next multiple of the block.
func padLen(n, block int) int {
	if n > block {
		return (n + block - 1) / block * block
	}
	p := minPad
	for p < n {
		p *= 2
	}
	return min(p, max(block, n))
}

// checkTokens reports a token outside the model's vocabulary.
func (m *Model) checkTokens(tokens []int32) error {
	if len(tokens) == 0 {
		return errors.New("eval: no tokens")
	}
	v := m.Config().Vocab
	for i, t := range tokens {
		if t < 0 || int(t) >= v {
			return fmt.Errorf("eval: token %d at %d outside the vocabulary [0, %d)", t, i, v)
		}
	}
	return nil
}

// Hidden runs the decoder layers over tokens (positions 0..L-1, one document)
// and returns the last layer's output h [Lp, D], where Lp >= L is the padded
// length: rows [0, L) are the tokens', the rest padding.
func (m *Model) Hidden(ctx context.Context, tokens []int32) (*tensors.Tensor, error) {
	return m.hidden(ctx, tokens, nil)
}

// hidden is Hidden; keep, if not nil, sees each layer's keys and values
// [Lp, KH, Dh] (those of the padding included).
func (m *Model) hidden(ctx context.Context, tokens []int32, keep func(layer int, k, v *tensors.Tensor)) (*tensors.Tensor, error) {
	if err := m.checkTokens(tokens); err != nil {
		return nil, err
	}
	p, c := m.Params, m.Config()
	n := len(tokens)
	lp := padLen(n, m.block())
	ids := make([]int32, lp) // padding: token 0, after every real token
	copy(ids, tokens)
	tok := model.Tokens{Pos: make([]int32, lp), Doc: make([]int32, lp)}
	for i := range tok.Pos {
		tok.Pos[i] = int32(i)
	}
	cos, sin := model.RopeTablesFor(c, p.DType, tok.Pos, n)
	attn := m.attention()
	h := host.GatherRows(p.Get("model.embed_tokens.weight"), ids) // [Lp, D]
	return m.layers(ctx, h, cos, sin, func(ctx context.Context, l int, q, k, v *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
		if keep != nil {
			keep(l, k, v)
		}
		return attn.Forward(ctx, q, k, v, tok)
	})
}

// layers runs the decoder layers over h [L, D] (cos, sin: its RoPE tables);
// attend is layer l's attention (model.Attend).
func (m *Model) layers(ctx context.Context, h, cos, sin *tensors.Tensor, attend func(ctx context.Context, l int, q, k, v *tensors.Tensor) (o, lse *tensors.Tensor, err error)) (*tensors.Tensor, error) {
	for l := range m.Config().Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next, _, _, err := m.Pieces.LayerForward(ctx, m.Params.Layer(l), h, cos, sin, func(ctx context.Context, q, k, v *tensors.Tensor) (*tensors.Tensor, *tensors.Tensor, error) {
			return attend(ctx, l, q, k, v)
		})
		if err != nil {
			return nil, fmt.Errorf("eval: layer %d: %w", l, err)
		}
		h = next
	}
	return h, nil
}

// LogitsRows is the head on rows [start, end) of h: logits [end-start, V].
func (m *Model) LogitsRows(h *tensors.Tensor, start, end int) (*tensors.Tensor, error) {
	p := m.Params
	logits, err := m.Pieces.Logits(p.Get("model.norm.weight"), p.OutputWeight(), host.SliceRows(h, start, end))
	if err != nil {
		return nil, fmt.Errorf("eval: head: %w", err)
	}
	return logits, nil
}

// Forward returns the logits [L, V] of tokens at positions 0..L-1, one
// document: row i scores the token that follows tokens[:i+1].
func (m *Model) Forward(ctx context.Context, tokens []int32) (*tensors.Tensor, error) {
	h, err := m.Hidden(ctx, tokens)
	if err != nil {
		return nil, err
	}
	return m.LogitsRows(h, 0, len(tokens))
}

// NLL returns the negative log-likelihood, in nats, of every token after the
// first given those before it: nll[i] = -log p(tokens[i+1] | tokens[:i+1]),
// len(tokens)-1 values. It is the trainer's per-token cross-entropy.
func (m *Model) NLL(ctx context.Context, tokens []int32) ([]float64, error) {
	if len(tokens) < 2 {
		return nil, fmt.Errorf("eval: NLL needs at least 2 tokens, got %d", len(tokens))
	}
	h, err := m.Hidden(ctx, tokens)
	if err != nil {
		return nil, err
	}
	logits, err := m.LogitsRows(h, 0, len(tokens)-1)
	if err != nil {
		return nil, err
	}
	flat, v := host.ToFloat64(logits), m.Config().Vocab
	nll := make([]float64, len(tokens)-1)
	for i := range nll {
		row := flat[i*v : (i+1)*v]
		nll[i] = logSumExp(row) - row[tokens[i+1]]
	}
	return nll, nil
}

// Rows copies a [N, V] float tensor into N rows of float32.
func Rows(t *tensors.Tensor) [][]float32 {
	d := t.Shape().Dimensions
	if len(d) != 2 {
		panic(fmt.Sprintf("eval: Rows of a %d-d tensor %s", len(d), t.Shape()))
	}
	flat := make([]float32, d[0]*d[1])
	t.MustConstFlatData(func(a any) {
		switch v := a.(type) {
		case []float32:
			copy(flat, v)
		case []float64:
			for i, x := range v {
				flat[i] = float32(x)
			}
		default:
			panic(fmt.Sprintf("eval: Rows of %s", t.DType()))
		}
	})
	rows := make([][]float32, d[0])
	for i := range rows {
		rows[i] = flat[i*d[1] : (i+1)*d[1] : (i+1)*d[1]]
	}
	return rows
}

// logSumExp is log(sum(exp(x))).
func logSumExp(x []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s)
}

// Argmax is the index of the largest value; the first on a tie.
func Argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
