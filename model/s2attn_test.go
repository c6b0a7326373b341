package model_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/gomlx/compute/dtypes"
	. "github.com/gomlx/gomlx/core/graph" //nolint:revive
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
)

// s2Mask is the reference shifted sparse attention mask, [H, L, L] flat: query
// head h sees key j when both are in the same document, j is not after the
// query, and both are in the same group of g in-document positions, the groups
// shifted by g/2 for the heads shifted(h) says.
func s2Mask(tok model.Tokens, heads, g int, shifted func(h int) bool) []bool {
	L := tok.Len()
	m := make([]bool, heads*L*L)
	for h := range heads {
		shift := int32(0)
		if shifted(h) {
			shift = int32(g / 2)
		}
		grp := func(i int) int32 { return (tok.Pos[i] + shift) / int32(g) }
		for i := range L {
			for j := range L {
				m[(h*L+i)*L+j] = tok.Doc[i] == tok.Doc[j] && tok.Pos[j] <= tok.Pos[i] && grp(i) == grp(j)
			}
		}
	}
	return m
}

// TestS2AttentionMatchesNaive: blockwise shifted sparse attention, forward and
// backward, equals a float64 reference with an explicit per-head [L, L] mask:
// packed documents whose boundaries fall inside groups, GQA, uneven blocks,
// groups that do not divide the length, and (as a Ulysses rank computes) a
// subset of the model's heads. The references with the shift taken off, or put
// on every head, must not match: the halves' masks really differ.
func TestS2AttentionMatchesNaive(t *testing.T) {
	backend := testBackend(t)
	cases := []struct {
		name                 string
		heads, kvHeads       int
		headBase, modelHeads int // which of the model's heads these are (0, 0: all)
		docs                 []int
		group                int
		blockQ, blockK       int
	}{
		{"packed, GQA 2:1, uneven blocks, group 4", 4, 2, 0, 0, []int{7, 11, 5}, 4, 5, 3},
		{"packed, group 6 dividing no document", 4, 2, 0, 0, []int{30, 3, 13}, 6, 8, 7},
		{"blocks inside groups: skipped and unmasked pairs", 4, 2, 0, 0, []int{40, 9}, 16, 4, 4},
		{"group 2, GQA 2:1, blocks of one", 2, 1, 0, 0, []int{5, 4}, 2, 1, 1},
		{"heads 2-3 of 4: all shifted", 2, 1, 2, 4, []int{7, 11, 5}, 4, 5, 3},
		{"heads 1-2 of 4: halves inside a kv group", 2, 1, 1, 4, []int{7, 11, 5}, 4, 3, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := model.Config{Vocab: 16, Dim: 8 * tc.heads, Layers: 1, Heads: tc.heads, KVHeads: tc.kvHeads,
				MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5}
			tok := packedTokens(tc.docs...)
			L, hd := tok.Len(), cfg.HeadDimension()
			rng := rand.New(rand.NewPCG(2, uint64(L)))
			f64 := dtypes.Float64
			q := randTensor(rng, f64, 1, L, tc.heads, hd)
			k := randTensor(rng, f64, 1, L, tc.kvHeads, hd)
			v := randTensor(rng, f64, 1, L, tc.kvHeads, hd)
			do := randTensor(rng, f64, 1, L, tc.heads*hd)

			pieces, err := model.NewPieces(backend, cfg)
			if err != nil {
				t.Fatal(err)
			}
			ba := &model.BlockAttention{P: pieces, BlockQ: tc.blockQ, BlockK: tc.blockK,
				ShiftGroups: tc.group, HeadBase: tc.headBase, ModelHeads: tc.modelHeads}
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
			modelHeads := max(tc.modelHeads, tc.heads)
			s2 := func(h int) bool { return tc.headBase+h >= modelHeads/2 }
			mask := s2Mask(tok, tc.heads, tc.group, s2)
			want, err := ref.Exec(q, k, v, tensors.FromFlatDataAndDimensions(mask, tc.heads, L, L), do)
			if err != nil {
				t.Fatal(err)
			}
			for i, got := range []*tensors.Tensor{o, dq, dk, dv} {
				name := []string{"o", "dq", "dk", "dv"}[i]
				if e := maxRelErr(t, name, got, want[i]); e > 1e-9 {
					t.Errorf("%s: relative error %.3g > 1e-9", name, e)
				}
			}

			// The wrong masks: every head unshifted, every head shifted, and full
			// attention (tokens of every group) must each give another output.
			for _, wrong := range []struct {
				name string
				mask []bool
			}{
				{"no head shifted", s2Mask(tok, tc.heads, tc.group, func(int) bool { return false })},
				{"every head shifted", s2Mask(tok, tc.heads, tc.group, func(int) bool { return true })},
				{"full attention", s2Mask(tok, tc.heads, 1<<20, s2)},
			} {
				if slices.Equal(wrong.mask, mask) {
					continue // e.g. every head of this subset is shifted anyway
				}
				other, err := ref.Exec(q, k, v, tensors.FromFlatDataAndDimensions(wrong.mask, tc.heads, L, L), do)
				if err != nil {
					t.Fatal(err)
				}
				if e := maxRelErr(t, "o", o, other[0]); e < 1e-3 {
					t.Errorf("output matches the reference with %s (relative difference %.3g): the mask does not depend on the head half", wrong.name, e)
				}
			}
		})
	}
}
