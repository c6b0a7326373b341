package trainer_test

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/gobackend"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/trainer"
)

func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := gobackend.New("")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// packedBatch packs documents of the given lengths into one sequence, with random
// tokens, positions restarting per document and no target across a boundary.
func packedBatch(rng *rand.Rand, vocab int, lengths ...int) data.Batch {
	var b data.Batch
	var stream []int32
	var doc []int32
	for d, n := range lengths {
		for range n {
			stream = append(stream, int32(rng.IntN(vocab)))
			doc = append(doc, int32(d))
		}
	}
	pos := int32(0)
	for i := 0; i+1 < len(stream); i++ {
		if i > 0 && doc[i] != doc[i-1] {
			pos = 0
		}
		b.Tokens = append(b.Tokens, stream[i])
		b.Targets = append(b.Targets, stream[i+1])
		b.Pos = append(b.Pos, pos)
		b.Doc = append(b.Doc, doc[i])
		w := float32(0)
		if doc[i] == doc[i+1] {
			w = 1
		}
		b.Weight = append(b.Weight, w)
		pos++
	}
	return b
}

// referenceLoss is the whole model as one plain graph, written independently of the
// pieces: one-hot embedding, RMSNorm, rotary embedding by explicit pairs, naive
// attention with an explicit [L, L] mask, SwiGLU, mean cross-entropy over targets.
// A projection adds its bias when names has one (Qwen2's q, k, v; attention_bias's o).
func referenceLoss(c model.Config, names []string, params []*Node, tokens, targets, weight, mask, cos, sin *Node) *Node {
	P := map[string]*Node{}
	for i, n := range names {
		P[n] = params[i]
	}
	L, hd := tokens.Shape().Dimensions[0], c.HeadDimension()
	dt := params[0].DType()
	norm := func(x, w *Node) *Node {
		ms := ReduceAndKeep(Mul(x, x), ReduceMean, -1)
		return Mul(Mul(x, Inverse(Sqrt(AddScalar(ms, c.NormEps)))), ExpandAxes(w, 0))
	}
	lin := func(x, w *Node) *Node { return Einsum("li,oi->lo", x, w) }
	rot := func(x *Node, heads int) *Node { // x [L, heads*hd]
		x = Reshape(x, L, heads, hd)
		half := hd / 2
		a := Slice(x, AxisRange(), AxisRange(), AxisRange(0, half))
		b := Slice(x, AxisRange(), AxisRange(), AxisRange(half, hd))
		cs, sn := ExpandAxes(cos, 1), ExpandAxes(sin, 1) // [L, 1, half]
		return Concatenate([]*Node{Sub(Mul(a, cs), Mul(b, sn)), Add(Mul(b, cs), Mul(a, sn))}, -1)
	}
	h := Einsum("lv,vd->ld", OneHot(tokens, c.Vocab, dt), P["model.embed_tokens.weight"])
	g := c.Heads / c.KVHeads
	for l := range c.Layers {
		w := func(s string) *Node { return P[model.LayerParam(l, s)] }
		proj := func(x *Node, weight, bias string) *Node {
			y := lin(x, w(weight))
			if b, ok := P[model.LayerParam(l, bias)]; ok {
				y = Add(y, ExpandAxes(b, 0))
			}
			return y
		}
		x := norm(h, w(model.InputNorm))
		q := rot(proj(x, model.QProj, model.QProjBias), c.Heads)
		k := rot(proj(x, model.KProj, model.KProjBias), c.KVHeads)
		v := Reshape(proj(x, model.VProj, model.VProjBias), L, c.KVHeads, hd)
		var heads []*Node
		for hh := range c.Heads {
			qh := Reshape(Slice(q, AxisRange(), AxisRange(hh, hh+1), AxisRange()), L, hd)
			kh := Reshape(Slice(k, AxisRange(), AxisRange(hh/g, hh/g+1), AxisRange()), L, hd)
			vh := Reshape(Slice(v, AxisRange(), AxisRange(hh/g, hh/g+1), AxisRange()), L, hd)
			s := DivScalar(Einsum("id,jd->ij", qh, kh), math.Sqrt(float64(hd)))
			s = Where(mask, s, Scalar(h.Graph(), dt, -1e30))
			heads = append(heads, Einsum("ij,jd->id", Softmax(s, -1), vh))
		}
		h = Add(h, proj(Concatenate(heads, 1), model.OProj, model.OProjBias))
		x = norm(h, w(model.PostNorm))
		gate := lin(x, w(model.GateProj))
		h = Add(h, lin(Mul(Mul(gate, Sigmoid(gate)), lin(x, w(model.UpProj))), w(model.DownProj)))
	}
	out := P["lm_head.weight"]
	if c.TieEmbeddings {
		out = P["model.embed_tokens.weight"]
	}
	logits := lin(norm(h, P["model.norm.weight"]), out)
	logp := LogSoftmax(logits, -1)
	nll := Neg(ReduceSum(Mul(logp, OneHot(targets, c.Vocab, dt)), -1))
	return Div(ReduceAllSum(Mul(nll, weight)), ReduceAllSum(weight))
}

// randomizeBiases gives every bias random values: Init makes them zero, which
// would let a forward that drops them pass.
func randomizeBiases(p *model.Params, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, n := range p.Names() {
		if model.IsBias(n) {
			t := p.T[n]
			v := make([]float64, t.Size())
			for i := range v {
				v[i] = rng.NormFloat64() * 0.3
			}
			p.T[n] = host.FromFloat64(p.DType, v, t.Shape().Dimensions...)
		}
	}
}

func refInputs(c model.Config, b data.Batch) (mask, cos, sin *tensors.Tensor) {
	L, half := len(b.Tokens), c.HeadDimension()/2
	m := make([]bool, L*L)
	cv, sv := make([]float64, L*half), make([]float64, L*half)
	for i := range L {
		for j := range L {
			m[i*L+j] = b.Doc[i] == b.Doc[j] && j <= i
		}
		for f := range half {
			a := float64(b.Pos[i]) * math.Pow(c.RopeTheta, -2*float64(f)/float64(c.HeadDimension()))
			cv[i*half+f], sv[i*half+f] = math.Cos(a), math.Sin(a)
		}
	}
	return tensors.FromFlatDataAndDimensions(m, L, L),
		tensors.FromFlatDataAndDimensions(cv, L, half), tensors.FromFlatDataAndDimensions(sv, L, half)
}

func relErr(got, want []float64) float64 {
	var num, den float64
	for i := range got {
		num = max(num, math.Abs(got[i]-want[i]))
		den = max(den, math.Abs(want[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

// TestGradientsMatchFloat64Reference: every parameter's gradient from the
// layer-by-layer schedule (blockwise attention, recompute, VJPs of the pieces)
// equals autodiff of the plain whole-model float64 graph.
// Error is max|got-want| / max|want| per parameter.
func TestGradientsMatchFloat64Reference(t *testing.T) {
	backend := testBackend(t)
	cases := []struct {
		name  string
		dtype dtypes.DType
		tol   float64
		tied  bool
		keep  bool         // recompute: except_attention
		mixed dtypes.DType // Config.Compute: bf16 mixed precision over float32 weights
		qkvB  bool         // q, k, v biases (Qwen2)
		oB    bool         // and o's (Llama's attention_bias)
	}{
		{"float64", dtypes.Float64, 1e-9, false, false, 0, false, false},
		{"float64 tied", dtypes.Float64, 1e-9, true, false, 0, false, false},
		{"float64 keep attention", dtypes.Float64, 1e-9, false, true, 0, false, false},
		{"float32", dtypes.Float32, 1e-4, false, false, 0, false, false},
		// bf16 keeps 8 bits of mantissa: each rounded operand is off by up to 2^-9
		// relative, and a gradient of this 2-layer model passes through some 10-20
		// rounded products (measured: 3-6% at worst, max-abs error over max-abs).
		{"bfloat16 mixed", dtypes.Float32, 8e-2, false, false, dtypes.BFloat16, false, false},
		{"bfloat16 mixed tied keep attention", dtypes.Float32, 8e-2, true, true, dtypes.BFloat16, false, false},
		{"float64 qwen2 biases", dtypes.Float64, 1e-9, true, false, 0, true, false},
		{"float64 attention_bias keep attention", dtypes.Float64, 1e-9, false, true, 0, true, true},
		{"float32 qwen2 biases", dtypes.Float32, 1e-4, false, false, 0, true, false},
		{"bfloat16 mixed attention_bias", dtypes.Float32, 8e-2, false, false, dtypes.BFloat16, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := model.Config{Vocab: 32, Dim: 32, Layers: 2, Heads: 4, KVHeads: 2, MLPDim: 48,
				RopeTheta: 10000, NormEps: 1e-5, TieEmbeddings: tc.tied, Compute: tc.mixed, QKVBias: tc.qkvB, OBias: tc.oB}
			rng := rand.New(rand.NewPCG(7, 7))
			b := packedBatch(rng, cfg.Vocab, 11, 13, 7) // three documents in one sequence
			ref64, err := model.Init(cfg, dtypes.Float64, 0.3, 3)
			if err != nil {
				t.Fatal(err)
			}
			randomizeBiases(ref64, 4)
			names := cfg.ParamNames()
			params := &model.Params{Config: cfg, DType: tc.dtype, T: map[string]*tensors.Tensor{}}
			for _, n := range names {
				params.T[n] = host.FromFloat64(tc.dtype, host.ToFloat64(ref64.T[n]), ref64.T[n].Shape().Dimensions...)
			}
			pieces, err := model.NewPieces(backend, cfg)
			if err != nil {
				t.Fatal(err)
			}
			eng := &trainer.Engine{Pieces: pieces, Params: params, Store: trainer.NewKeepStore(), KeepAttention: tc.keep,
				Attn: &model.BlockAttention{P: pieces, BlockQ: 8, BlockK: 5}}
			grads := trainer.NewGrads(params)
			loss, err := eng.ForwardBackward(context.Background(), b, 1/float64(b.NumTargets()), grads)
			if err != nil {
				t.Fatal(err)
			}

			ref, err := NewExec(backend, func(in []*Node) []*Node {
				n := len(names)
				l := referenceLoss(cfg, names, in[:n], in[n], in[n+1], in[n+2], in[n+3], in[n+4], in[n+5])
				return append([]*Node{l}, Gradient(l, in[:n]...)...)
			})
			if err != nil {
				t.Fatal(err)
			}
			worst := checkReference(t, ref, ref64, names, b, loss, grads, names, tc.tol)
			t.Logf("%d parameters, worst relative error %.3g (tolerance %.0e)", len(names), worst, tc.tol)
			if tc.mixed != 0 && worst < 1e-4 {
				t.Errorf("worst relative error %.3g: as exact as float32, so the matmuls did not run in %s", worst, tc.mixed)
			}
		})
	}
}

// checkReference runs the reference graph ref on ref64's tensors named inputs
// and the batch, and checks the loss and the gradients of names (ref's outputs
// after the loss, in that order) against it, relative error at most tol. It
// returns the worst relative error of a gradient.
func checkReference(t *testing.T, ref *Exec, ref64 *model.Params, inputs []string, b data.Batch, loss float64, grads trainer.Grads, names []string, tol float64) float64 {
	t.Helper()
	mask, cos, sin := refInputs(ref64.Config, b)
	w := make([]float64, len(b.Weight))
	for i, x := range b.Weight {
		w[i] = float64(x)
	}
	var args []any
	for _, n := range inputs {
		args = append(args, ref64.T[n])
	}
	args = append(args, host.Int32s(b.Tokens), host.Int32s(b.Targets), tensors.FromFlatDataAndDimensions(w, len(w)), mask, cos, sin)
	want, err := ref.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	if e := math.Abs(loss-host.ScalarValue(want[0])) / host.ScalarValue(want[0]); e > tol {
		t.Errorf("loss %.12g, reference %.12g: relative error %.3g", loss, host.ScalarValue(want[0]), e)
	}
	worst := 0.0
	for i, n := range names {
		e := relErr(host.ToFloat64(grads[n]), host.ToFloat64(want[i+1]))
		worst = max(worst, e)
		if e > tol || math.IsNaN(e) {
			t.Errorf("%s: relative error %.3g > %.0e", n, e, tol)
		}
	}
	return worst
}
