package model_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
)

// TestAttentionGradIsPartsSummed: Grad, which adds each query block's share
// into the key block's rows as it goes, gives the bits of GradParts then
// SumOnto (one partial per query block, summed last to first), whatever the
// number of query blocks computed at once, for blocks that do not divide the
// length, packed documents and GQA, in float32 (where the order of additions
// shows in the bits).
func TestAttentionGradIsPartsSummed(t *testing.T) {
	backend := testBackend(t)
	for _, tc := range []struct {
		name           string
		heads, kvHeads int
		docs           []int
		blockQ, blockK int
	}{
		{"packed, uneven blocks, GQA", 4, 2, []int{37, 61, 29}, 9, 13},
		{"one doc, blocks divide", 2, 2, []int{96}, 8, 8},
		{"blocks of one", 2, 1, []int{9, 14}, 1, 3},
	} {
		for _, par := range []int{1, 2, 3, 8} {
			t.Run(fmt.Sprintf("%s/parallel-%d", tc.name, par), func(t *testing.T) {
				cfg := model.Config{Vocab: 16, Dim: 8 * tc.heads, Layers: 1, Heads: tc.heads, KVHeads: tc.kvHeads,
					MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5}
				tok := packedTokens(tc.docs...)
				L, hd := tok.Len(), cfg.HeadDimension()
				rng := rand.New(rand.NewPCG(3, uint64(L)))
				f32 := dtypes.Float32
				q, k, v := randTensor(rng, f32, 1, L, tc.heads, hd), randTensor(rng, f32, 1, L, tc.kvHeads, hd), randTensor(rng, f32, 1, L, tc.kvHeads, hd)
				do := randTensor(rng, f32, 1, L, tc.heads*hd)
				pieces, err := model.NewPieces(backend, cfg)
				if err != nil {
					t.Fatal(err)
				}
				ba := &model.BlockAttention{P: pieces, BlockQ: tc.blockQ, BlockK: tc.blockK, Parallel: par}
				o, lse, err := ba.Forward(context.Background(), q, k, v, tok)
				if err != nil {
					t.Fatal(err)
				}
				grads := func(parts bool) (dq, dk, dv *tensors.Tensor) {
					bw, err := ba.BeginBackward(q, tok, o, lse, do)
					if err != nil {
						t.Fatal(err)
					}
					if parts {
						p, err := bw.GradParts(k, v, tok)
						if err != nil {
							t.Fatal(err)
						}
						dk, dv = p.SumOnto(nil, nil)
					} else if dk, dv, err = bw.Grad(k, v, tok); err != nil {
						t.Fatal(err)
					}
					return bw.DQ, dk, dv
				}
				dq0, dk0, dv0 := grads(true)
				for range 3 { // the goroutines interleave differently each time
					dq, dk, dv := grads(false)
					for i, pair := range [][2]*tensors.Tensor{{dq, dq0}, {dk, dk0}, {dv, dv0}} {
						if !slices.Equal(tensors.MustCopyFlatData[float32](pair[0]), tensors.MustCopyFlatData[float32](pair[1])) {
							t.Fatalf("%s differs from GradParts+SumOnto's", []string{"dq", "dk", "dv"}[i])
						}
					}
				}
			})
		}
	}
}

// TestAttentionBackwardMemoryGrowsLinearly: the peak resident memory of one
// attention backward (a process of its own, so that nothing else is in it)
// at lengths L, 2L and 4L grows linearly: (M(4L) - M(L)) / (M(2L) - M(L)) is
// 3 for linear growth, 5 for the L²/Bq of one dK, dV partial per query block.
func TestAttentionBackwardMemoryGrowsLinearly(t *testing.T) {
	if l := os.Getenv("TORUS_ATTN_MEM_LEN"); l != "" {
		n, _ := strconv.Atoi(l)
		attentionBackwardAt(t, n)
		return
	}
	if testing.Short() || raceDetector {
		t.Skip("three attention backwards at up to 8192 tokens, measured without the race detector")
	}
	const base = 2048
	peak := map[int]float64{}
	for _, n := range []int{base, 2 * base, 4 * base} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAttentionBackwardMemoryGrowsLinearly$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("TORUS_ATTN_MEM_LEN=%d", n), "GOGC=50")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("L=%d: %v\n%s", n, err, out)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "PEAK_MIB "); ok {
				peak[n], _ = strconv.ParseFloat(v, 64)
			}
		}
		if peak[n] == 0 {
			t.Fatalf("L=%d: no peak reported:\n%s", n, out)
		}
	}
	ratio := (peak[4*base] - peak[base]) / (peak[2*base] - peak[base])
	t.Logf("peak RSS %.0f, %.0f, %.0f MiB at %d, %d, %d tokens: growth ratio %.2f (linear 3, quadratic 5)",
		peak[base], peak[2*base], peak[4*base], base, 2*base, 4*base, ratio)
	if ratio > 3.6 {
		t.Errorf("attention backward memory grows faster than the length: ratio %.2f", ratio)
	}
}

// attentionBackwardAt runs one forward and backward of 8 heads x 64 at n
// tokens with blocks of 128 and prints the process's peak resident memory.
func attentionBackwardAt(t *testing.T, n int) {
	cfg := model.Config{Vocab: 16, Dim: 512, Layers: 1, Heads: 8, KVHeads: 8, MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5}
	pieces, err := model.NewPieces(testBackend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok := packedTokens(n)
	rng := rand.New(rand.NewPCG(1, 2))
	f32 := dtypes.Float32
	q, k, v := randTensor(rng, f32, 1, n, 8, 64), randTensor(rng, f32, 1, n, 8, 64), randTensor(rng, f32, 1, n, 8, 64)
	do := randTensor(rng, f32, 1, n, 512)
	ba := &model.BlockAttention{P: pieces, BlockQ: 128, BlockK: 128}
	o, lse, err := ba.Forward(context.Background(), q, k, v, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := ba.Backward(context.Background(), q, k, v, tok, o, lse, do); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			fmt.Printf("PEAK_MIB %.1f\n", kb/1024)
		}
	}
}
