package eval

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/device"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
)

var tinyConfig = model.Config{Vocab: 64, Dim: 16, Layers: 2, Heads: 2, KVHeads: 1, MLPDim: 32, RopeTheta: 10000, NormEps: 1e-5}

var testBackend compute.Backend

func backend(t *testing.T) compute.Backend {
	t.Helper()
	if testBackend == nil {
		b, err := device.Open("auto", device.Options{})
		if err != nil {
			t.Fatal(err)
		}
		testBackend = b.Compute
	}
	return testBackend
}

// tinyModel is a random model; block is its attention block size.
func tinyModel(t *testing.T, cfg model.Config, dtype dtypes.DType, block int) *Model {
	t.Helper()
	p, err := model.Init(cfg, dtype, 0.5, 7) // a large std: sharp, far from uniform predictions
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(p, backend(t))
	if err != nil {
		t.Fatal(err)
	}
	m.Block = block
	return m
}

func randTokens(n, vocab int, seed int) []int32 {
	out := make([]int32, n)
	x := uint32(seed)*2654435761 + 1
	for i := range out {
		x = x*1664525 + 1013904223
		out[i] = int32(x>>8) % int32(vocab)
	}
	return out
}

// trainerLosses computes each position's cross-entropy the trainer's way,
// independently of Model: the layer loop of trainer.Engine.Loss on the
// unpadded tokens with other block sizes, then the Head piece with a one-hot
// weight per position.
func trainerLosses(t *testing.T, m *Model, tokens []int32) []float64 {
	t.Helper()
	p, c := m.Params, m.Config()
	n := len(tokens) - 1
	tok := model.Tokens{Pos: make([]int32, n), Doc: make([]int32, n)}
	for i := range tok.Pos {
		tok.Pos[i] = int32(i)
	}
	cos, sin := model.RopeTables(c, p.DType, tok.Pos)
	attn := &model.BlockAttention{P: m.Pieces, BlockQ: 5, BlockK: 3}
	h := host.GatherRows(p.Get("model.embed_tokens.weight"), tokens[:n])
	for l := range c.Layers {
		w := p.Layer(l)
		q, k, v, err := m.Pieces.PreAttn(w, h, cos, sin)
		if err != nil {
			t.Fatal(err)
		}
		o, _, err := attn.Forward(context.Background(), q, k, v, tok)
		if err != nil {
			t.Fatal(err)
		}
		if h, err = m.Pieces.PostAttn(w, h, o); err != nil {
			t.Fatal(err)
		}
	}
	targets := host.Int32s(tokens[1:])
	loss := func(weight []float64) float64 {
		l, err := m.Pieces.HeadLoss(p.Get("model.norm.weight"), p.OutputWeight(), h, targets,
			host.FromFloat64(p.DType, weight, n), host.NewScalar(p.DType, 1))
		if err != nil {
			t.Fatal(err)
		}
		return host.ScalarValue(l)
	}
	out := make([]float64, n)
	for i := range out {
		w := make([]float64, n)
		w[i] = 1
		out[i] = loss(w)
	}
	return out
}

func TestNLLMatchesTrainerLoss(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dtype dtypes.DType
		n     int
		block int
		tol   float64
	}{
		{"float64 padded to 16", dtypes.Float64, 11, 512, 1e-9},
		{"float64 padded to 48 in blocks of 16", dtypes.Float64, 38, 16, 1e-9},
		{"float32 in blocks of 8", dtypes.Float32, 29, 8, 1e-4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyModel(t, tinyConfig, tc.dtype, tc.block)
			tokens := randTokens(tc.n, tinyConfig.Vocab, tc.n)
			got, err := m.NLL(context.Background(), tokens)
			if err != nil {
				t.Fatal(err)
			}
			want := trainerLosses(t, m, tokens)
			if len(got) != len(want) {
				t.Fatalf("%d NLL values, want %d", len(got), len(want))
			}
			var spread float64
			for i := range want {
				if d := math.Abs(got[i] - want[i]); d > tc.tol*max(1, want[i]) {
					t.Errorf("position %d: NLL %.10f, trainer's loss %.10f", i, got[i], want[i])
				}
				spread = max(spread, math.Abs(want[i]-want[0]))
			}
			if spread < 1e-3 {
				t.Fatalf("test setup: losses hardly differ by position (%g): the check would not see an off-by-one", spread)
			}
		})
	}
}

func TestPadLen(t *testing.T) {
	for _, tc := range []struct{ n, block, want int }{
		{1, 512, 16}, {16, 512, 16}, {17, 512, 32}, {300, 512, 512}, {512, 512, 512},
		{513, 512, 1024}, {1500, 512, 1536}, {20, 24, 24}, {25, 24, 48}, {5, 4, 8},
	} {
		if got := padLen(tc.n, tc.block); got != tc.want {
			t.Errorf("padLen(%d, %d) = %d, want %d", tc.n, tc.block, got, tc.want)
		}
	}
}

func TestBadTokens(t *testing.T) {
	m := tinyModel(t, tinyConfig, dtypes.Float32, 512)
	if _, err := m.Forward(context.Background(), []int32{1, 64}); err == nil || !strings.Contains(err.Error(), "vocabulary") {
		t.Errorf("token 64 of a 64-token vocabulary: %v", err)
	}
	if _, err := m.NLL(context.Background(), []int32{1}); err == nil {
		t.Error("NLL of one token: no error")
	}
}

func TestDefaultBuckets(t *testing.T) {
	for _, tc := range []struct {
		length int
		want   []int
	}{
		{100, []int{0, 100}}, {512, []int{0, 512}}, {1024, []int{0, 512, 1024}},
		{6000, []int{0, 512, 1024, 2048, 4096, 6000}}, {8192, []int{0, 512, 1024, 2048, 4096, 8192}},
	} {
		got := DefaultBuckets(tc.length)
		if !equalInts(got, tc.want) {
			t.Errorf("DefaultBuckets(%d) = %v, want %v", tc.length, got, tc.want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPerplexityBuckets: each document is cut at Length, its tokens land in
// the bucket of their position, and a bucket's mean is that of its tokens.
func TestPerplexityBuckets(t *testing.T) {
	dir := t.TempDir()
	texts := []string{"short document, twenty", strings.Repeat("a longer document that is cut. ", 3)}
	var srcs []data.SourceConfig
	for i, s := range texts {
		p := filepath.Join(dir, string(rune('a'+i))+".txt")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, data.SourceConfig{Type: "text_file", Path: p})
	}
	corpus, err := data.OpenCorpus(srcs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := tinyConfig
	cfg.Vocab = 256
	m := tinyModel(t, cfg, dtypes.Float64, 16)
	edges := []int{0, 8, 16, 40}
	res, err := m.Perplexity(context.Background(), corpus, data.ByteTokenizer{}, PPLConfig{Length: 32, Buckets: edges})
	if err != nil {
		t.Fatal(err)
	}
	// The same, by hand from NLL.
	sum := make([]float64, 3)
	count := make([]int, 3)
	for _, s := range texts {
		ids := data.ByteTokenizer{}.Encode([]byte(s))[:min(len(s), 32)]
		nll, err := m.NLL(context.Background(), ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range nll {
			b := bucketOf(edges, i+1)
			sum[b] += x
			count[b]++
		}
	}
	wantTokens := []int{7 + 7, 8 + 8, (len(texts[0]) - 16) + (32 - 16)}
	if res.Docs != 2 || len(res.Buckets) != 3 {
		t.Fatalf("%d docs, %d buckets; want 2, 3", res.Docs, len(res.Buckets))
	}
	for b, bk := range res.Buckets {
		if bk.From != edges[b] || bk.To != edges[b+1] || bk.Tokens != wantTokens[b] || count[b] != wantTokens[b] {
			t.Errorf("bucket %d: %+v, want [%d, %d) with %d tokens (by hand: %d)", b, bk, edges[b], edges[b+1], wantTokens[b], count[b])
		}
		if want := sum[b] / float64(count[b]); math.Abs(bk.MeanNLL-want) > 1e-9 || math.Abs(bk.PPL-math.Exp(want)) > 1e-6*math.Exp(want) {
			t.Errorf("bucket %d: mean NLL %g, ppl %g; want %g, %g", b, bk.MeanNLL, bk.PPL, want, math.Exp(want))
		}
	}
	var table strings.Builder
	if err := res.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"positions", "0-8", "8-16", "16-40", "all", "perplexity"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// Only the first document.
	res1, err := m.Perplexity(context.Background(), corpus, data.ByteTokenizer{}, PPLConfig{Length: 32, Buckets: edges, Docs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res1.Docs != 1 || res1.Buckets[2].Tokens != len(texts[0])-16 {
		t.Errorf("--docs 1: %d docs, last bucket %d tokens; want 1, %d", res1.Docs, res1.Buckets[2].Tokens, len(texts[0])-16)
	}
	if _, err := m.Perplexity(context.Background(), corpus, data.ByteTokenizer{}, PPLConfig{Length: 32, Buckets: []int{0, 8, 8}}); err == nil {
		t.Error("buckets not ascending: no error")
	}
}

// tensorOf makes a [rows, cols] float32 tensor.
func tensorOf(rows [][]float32) *tensors.Tensor {
	var flat []float32
	for _, r := range rows {
		flat = append(flat, r...)
	}
	return tensors.FromFlatDataAndDimensions(flat, len(rows), len(rows[0]))
}

func TestRowsAndArgmax(t *testing.T) {
	rows := Rows(tensorOf([][]float32{{1, 3, 3}, {-1, -2, -0.5}}))
	if len(rows) != 2 || Argmax(rows[0]) != 1 || Argmax(rows[1]) != 2 {
		t.Errorf("rows %v: argmax %d, %d; want 1 (first of a tie), 2", rows, Argmax(rows[0]), Argmax(rows[1]))
	}
}
