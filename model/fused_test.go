package model_test

import (
	"context"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/gobackend"

	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

func TestPlain(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pos, doc []int32
		want     bool
	}{
		{"one document from 0", []int32{0, 1, 2, 3}, []int32{5, 5, 5, 5}, true},
		{"one document from later on", []int32{7, 8, 9}, []int32{1, 1, 1}, true},
		{"two documents", []int32{0, 1, 0, 1}, []int32{1, 1, 2, 2}, false},
		{"a gap (zigzag halves)", []int32{0, 1, 6, 7}, []int32{1, 1, 1, 1}, false},
		{"empty", nil, nil, false},
	} {
		if got := model.Plain(model.Tokens{Pos: tc.pos, Doc: tc.doc}); got != tc.want {
			t.Errorf("%s: Plain = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFusedAttentionFallsBack: packed documents go to the blockwise schedule,
// bitwise (the fused kernel itself needs a CUDA GPU: bench/gpucheck checks it
// against the decomposed attention there).
func TestFusedAttentionFallsBack(t *testing.T) {
	backend, err := gobackend.New("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := model.Config{Vocab: 16, Dim: 16, Layers: 1, Heads: 4, KVHeads: 2, MLPDim: 24, RopeTheta: 10000, NormEps: 1e-5}
	p, err := model.NewPieces(backend, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const L, hd = 12, 4
	vals := func(n, seed int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = float64((i*seed)%17)/17 - 0.5
		}
		return out
	}
	q := host.FromFloat64(dtypes.Float32, vals(L*4*hd, 7), L, 4, hd)
	k := host.FromFloat64(dtypes.Float32, vals(L*2*hd, 5), L, 2, hd)
	v := host.FromFloat64(dtypes.Float32, vals(L*2*hd, 3), L, 2, hd)
	tok := model.Tokens{Pos: []int32{0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2}, Doc: []int32{1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3}}
	block := &model.BlockAttention{P: p, BlockQ: 5, BlockK: 4}
	fused := &model.FusedAttention{P: p, Fallback: block}
	ctx := context.Background()
	o1, lse1, err := block.Forward(ctx, q, k, v, tok)
	if err != nil {
		t.Fatal(err)
	}
	o2, lse2, err := fused.Forward(ctx, q, k, v, tok)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]float64{"o": {host.ToFloat64(o1), host.ToFloat64(o2)}, "lse": {host.ToFloat64(lse1), host.ToFloat64(lse2)}} {
		for i := range pair[0] {
			if pair[0][i] != pair[1][i] {
				t.Fatalf("%s[%d]: %v blockwise, %v through FusedAttention", name, i, pair[0][i], pair[1][i])
			}
		}
	}
}
