package model_test

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

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

func testBackend(t testing.TB) compute.Backend {
	t.Helper()
	b, err := gobackend.New("")
	if err != nil {
		t.Fatalf("backend: %v", err)
	}
	return b
}

func randTensor(rng *rand.Rand, dtype dtypes.DType, scale float64, dims ...int) *tensors.Tensor {
	n := 1
	for _, d := range dims {
		n *= d
	}
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return host.FromFloat64(dtype, v, dims...)
}

// naiveAttention is the reference: scores for every (query, key) pair, an explicit
// [L, L] mask, a full softmax, kv heads repeated to the query heads.
// q [L, H, Dh], k, v [L, KH, Dh], mask [L, L] bool (or [H, L, L], one per head) -> o [L, H*Dh].
func naiveAttention(q, k, v, mask *Node, heads, kvHeads int) *Node {
	L, hd := q.Shape().Dimensions[0], q.Shape().Dimensions[2]
	g := heads / kvHeads
	var outs []*Node
	for h := range heads {
		qh := Slice(q, AxisRange(), AxisRange(h, h+1), AxisRange()) // [L, 1, Dh]
		kh := Slice(k, AxisRange(), AxisRange(h/g, h/g+1), AxisRange())
		vh := Slice(v, AxisRange(), AxisRange(h/g, h/g+1), AxisRange())
		qh, kh, vh = Reshape(qh, L, hd), Reshape(kh, L, hd), Reshape(vh, L, hd)
		s := MulScalar(Einsum("id,jd->ij", qh, kh), 1/math.Sqrt(float64(hd)))
		m := mask
		if mask.Rank() == 3 {
			m = Reshape(Slice(mask, AxisRange(h, h+1), AxisRange(), AxisRange()), L, L)
		}
		s = Where(m, s, Scalar(s.Graph(), s.DType(), -1e300))
		p := Softmax(s, -1)
		outs = append(outs, Einsum("ij,jd->id", p, vh))
	}
	return Concatenate(outs, 1) // [L, H*Dh]
}

func maskTensor(pos, doc []int32) *tensors.Tensor {
	L := len(pos)
	m := make([]bool, L*L)
	for i := range L {
		for j := range L {
			m[i*L+j] = doc[i] == doc[j] && pos[j] <= pos[i]
		}
	}
	return tensors.FromFlatDataAndDimensions(m, L, L)
}

// packedTokens makes positions and document ids for documents of the given lengths.
func packedTokens(lengths ...int) model.Tokens {
	var t model.Tokens
	for d, n := range lengths {
		for p := range n {
			t.Pos = append(t.Pos, int32(p))
			t.Doc = append(t.Doc, int32(d))
		}
	}
	return t
}

func maxRelErr(t *testing.T, name string, got, want *tensors.Tensor) float64 {
	t.Helper()
	g, w := host.ToFloat64(got), host.ToFloat64(want)
	if len(g) != len(w) {
		t.Fatalf("%s: size %d, want %d", name, len(g), len(w))
	}
	var num, den, worst float64
	for i := range g {
		num = max(num, math.Abs(g[i]-w[i]))
		den = max(den, math.Abs(w[i]))
		if math.IsNaN(g[i]) {
			t.Fatalf("%s: NaN at %d", name, i)
		}
	}
	if den > 0 {
		worst = num / den
	}
	return worst
}

func TestBlockAttentionMatchesNaive(t *testing.T) {
	backend := testBackend(t)
	cases := []struct {
		name           string
		heads, kvHeads int
		docs           []int
		blockQ, blockK int
	}{
		{"one doc, blocks divide", 4, 4, []int{24}, 8, 8},
		{"packed, uneven blocks, GQA", 4, 2, []int{7, 11, 5}, 5, 7},
		{"packed, GQA 4:1, odd blocks", 4, 1, []int{3, 1, 16, 9}, 6, 4},
		{"single block", 2, 1, []int{5, 8}, 64, 64},
		{"blocks of one", 2, 2, []int{4, 5}, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := model.Config{Vocab: 16, Dim: 8 * tc.heads, Layers: 1, Heads: tc.heads, KVHeads: tc.kvHeads,
				MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5}
			tok := packedTokens(tc.docs...)
			L, hd := tok.Len(), cfg.HeadDimension()
			rng := rand.New(rand.NewPCG(1, uint64(L)))
			f64 := dtypes.Float64
			q := randTensor(rng, f64, 1, L, tc.heads, hd)
			k := randTensor(rng, f64, 1, L, tc.kvHeads, hd)
			v := randTensor(rng, f64, 1, L, tc.kvHeads, hd)
			do := randTensor(rng, f64, 1, L, tc.heads*hd)

			pieces, err := model.NewPieces(backend, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ba := &model.BlockAttention{P: pieces, BlockQ: tc.blockQ, BlockK: tc.blockK}
			o, lse, err := ba.Forward(context.Background(), q, k, v, tok)
			if err != nil {
				t.Fatal(err)
			}
			dq, dk, dv, err := ba.Backward(context.Background(), q, k, v, tok, o, lse, do)
			if err != nil {
				t.Fatal(err)
			}

			ref, err := NewExec(backend, func(in []*Node) []*Node {
				o := naiveAttention(in[0], in[1], in[2], in[3], tc.heads, tc.kvHeads)
				grads := Gradient(ReduceAllSum(Mul(o, in[4])), in[0], in[1], in[2])
				return append([]*Node{o}, grads...)
			})
			if err != nil {
				t.Fatal(err)
			}
			want, err := ref.Exec(q, k, v, maskTensor(tok.Pos, tok.Doc), do)
			if err != nil {
				t.Fatal(err)
			}
			for i, got := range []*tensors.Tensor{o, dq, dk, dv} {
				name := []string{"o", "dq", "dk", "dv"}[i]
				if e := maxRelErr(t, name, got, want[i]); e > 1e-9 {
					t.Errorf("%s: relative error %.3g > 1e-9", name, e)
				}
			}
		})
	}
}
