package trainer_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/compute/dtypes"

	"github.com/torusml/torus/data"
	"github.com/torusml/torus/host"
	"github.com/torusml/torus/model"
	"github.com/torusml/torus/optim"
	"github.com/torusml/torus/parallel"
	"github.com/torusml/torus/trainer"
)

// parityConfig is a small model over packed text whose documents are shorter and
// longer than a shard, so boundaries fall inside and across shards.
func parityConfig(t *testing.T, dt dtypes.DType, seqLen, accum int) trainer.Config {
	t.Helper()
	dir := t.TempDir()
	var lines []string
	for i := range 12 {
		n := 5 + (i*37)%90 // 5 to 94 bytes
		lines = append(lines, fmt.Sprintf(`{"text": %q}`, strings.Repeat(string(rune('a'+i%26)), n/2)+strings.Repeat("xyz ", n/8)))
	}
	path := filepath.Join(dir, "docs.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return trainer.Config{
		Seed: 3, Backend: "go",
		Model:     model.Config{Vocab: 256, Dim: 32, Layers: 2, Heads: 8, KVHeads: 4, MLPDim: 48, RopeTheta: 10000, NormEps: 1e-5},
		DType:     dt,
		InitStd:   0.1,
		Sources:   []data.SourceConfig{{Type: "jsonl", Path: path, Field: "text"}},
		Tokenizer: "byte", SeqLen: seqLen, Shuffle: true, Interleave: 1,
		AttnBlockQ: 8, AttnBlockK: 8,
		AdamW:       optim.AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1},
		Schedule:    optim.Schedule{LR: 1e-3, Steps: 10, Decay: "constant"},
		MaxGradNorm: 1, GradAccum: accum,
	}
}

type result struct {
	loss  float64
	grads map[string][]float64
}

// runWorkers computes one step's loss and gradients with n in-process workers
// over transports ts (nil: a single worker, no transport).
func runWorkers(t *testing.T, cfg trainer.Config, ts []parallel.Transport, strategy string) []result {
	return runMesh(t, cfg, ts, strategy, 1)
}

// runMesh is runWorkers with dp data-parallel groups of len(ts)/dp ranks.
func runMesh(t *testing.T, cfg trainer.Config, ts []parallel.Transport, strategy string, dp int) []result {
	return runBalanced(t, cfg, ts, strategy, dp, func(int) *parallel.Balancer { return nil })
}

// runBalanced is runMesh with rank r's ring attention balanced by bal(r).
func runBalanced(t *testing.T, cfg trainer.Config, ts []parallel.Transport, strategy string, dp int, bal func(rank int) *parallel.Balancer) []result {
	return runDists(t, cfg, ts, strategy, dp, func(r int, d *trainer.Dist) { d.Balance = bal(r) })
}

// runDists is runMesh with each rank's Dist set up further by more.
func runDists(t *testing.T, cfg trainer.Config, ts []parallel.Transport, strategy string, dp int, more func(rank int, d *trainer.Dist)) []result {
	t.Helper()
	n := max(len(ts), 1)
	out := make([]result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var d *trainer.Dist
			if ts != nil {
				d = &trainer.Dist{T: ts[r], Mesh: parallel.Mesh{World: n, DP: dp, SP: n / dp}, Strategy: strategy}
				more(r, d)
			}
			tr, err := trainer.New(cfg, d)
			if err != nil {
				errs[r] = err
				return
			}
			loss, _, err := tr.Gradients(context.Background())
			if err != nil {
				errs[r] = err
				return
			}
			g := map[string][]float64{}
			for name, x := range tr.Grads() {
				g[name] = host.ToFloat64(x)
			}
			out[r] = result{loss, g}
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return out
}

// grpcTransports makes n transports over real gRPC on loopback, one per rank,
// as separate worker processes would (each its own listener and server).
func grpcTransports(t *testing.T, n int) []parallel.Transport {
	t.Helper()
	lns := make([]net.Listener, n)
	addrs := make([]string, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], addrs[i] = ln, ln.Addr().String()
	}
	ts := make([]parallel.Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := parallel.NewGRPC(context.Background(), parallel.GRPCConfig{Rank: i, Addrs: addrs, Listener: lns[i]})
			ts[i], errs[i] = g, err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", i, err)
		}
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, tr := range ts {
			wg.Add(1)
			go func() { defer wg.Done(); tr.Close() }()
		}
		wg.Wait()
	})
	return ts
}

// TestParallelParity: the loss and every gradient with 1, 2 and 4 workers over
// real gRPC on loopback (and the in-process transport), ring and Ulysses, packed
// documents whose boundaries fall inside and across shards, gradient
// accumulation 2, equal one worker's alone.
func TestParallelParity(t *testing.T) {
	cases := []struct {
		dtype dtypes.DType
		tol   float64
	}{{dtypes.Float64, 1e-9}, {dtypes.Float32, 1e-5}}
	for _, dc := range cases {
		cfg := parityConfig(t, dc.dtype, 64, 2)
		want := runWorkers(t, cfg, nil, "")[0]
		for _, n := range []int{1, 2, 4} {
			for _, tc := range []struct{ transport, strategy string }{{"grpc", "ring"}, {"grpc", "ulysses"}, {"local", "ring"}} {
				if tc.strategy == "ulysses" && cfg.Model.KVHeads%n != 0 {
					continue // fewer key/value heads than ranks: TestUlyssesReplicatesKVHeads
				}
				t.Run(fmt.Sprintf("%s/%d-workers/%s/%s", dc.dtype, n, tc.transport, tc.strategy), func(t *testing.T) {
					ts := parallel.NewLocal(n)
					if tc.transport == "grpc" {
						ts = grpcTransports(t, n)
					}
					got := runWorkers(t, cfg, ts, tc.strategy)
					for r, g := range got {
						if e := math.Abs(g.loss-want.loss) / math.Abs(want.loss); e > dc.tol {
							t.Errorf("rank %d: loss %.12g, one worker %.12g (relative error %.3g)", r, g.loss, want.loss, e)
						}
						for name, w := range want.grads {
							if e := relErr(g.grads[name], w); e > dc.tol || math.IsNaN(e) {
								t.Errorf("rank %d: %s: relative error %.3g > %.0e", r, name, e, dc.tol)
							}
						}
					}
				})
			}
		}
	}
}

// TestParallelParityShiftGroups: under shifted sparse attention (groups of 6
// positions: they divide neither the sequence nor the shards, and documents
// begin and end inside them) the loss and every gradient with 2 and 4 workers,
// ring and Ulysses (whose ranks each compute some of the heads, so the ranks
// differ in which groups they use), equal one worker's alone, which differs
// from full attention's.
func TestParallelParityShiftGroups(t *testing.T) {
	cases := []struct {
		dtype dtypes.DType
		tol   float64
	}{{dtypes.Float64, 1e-9}, {dtypes.Float32, 1e-5}}
	for _, dc := range cases {
		cfg := parityConfig(t, dc.dtype, 64, 1)
		full := runWorkers(t, cfg, nil, "")[0]
		cfg.ShiftGroups = 6
		want := runWorkers(t, cfg, nil, "")[0]
		if e := math.Abs(want.loss-full.loss) / math.Abs(full.loss); e < 10*dc.tol {
			t.Fatalf("%s: loss with shift groups %.12g, with full attention %.12g: shift_groups does not reach the attention", dc.dtype, want.loss, full.loss)
		}
		for _, n := range []int{2, 4} {
			for _, tc := range []struct{ transport, strategy string }{{"local", "ring"}, {"local", "ulysses"}, {"grpc", "ring"}} {
				if tc.strategy == "ulysses" && cfg.Model.KVHeads%n != 0 {
					continue
				}
				t.Run(fmt.Sprintf("%s/%d-workers/%s/%s", dc.dtype, n, tc.transport, tc.strategy), func(t *testing.T) {
					ts := parallel.NewLocal(n)
					if tc.transport == "grpc" {
						ts = grpcTransports(t, n)
					}
					for r, g := range runWorkers(t, cfg, ts, tc.strategy) {
						if e := math.Abs(g.loss-want.loss) / math.Abs(want.loss); e > dc.tol {
							t.Errorf("rank %d: loss %.12g, one worker %.12g (relative error %.3g)", r, g.loss, want.loss, e)
						}
						for name, w := range want.grads {
							if e := relErr(g.grads[name], w); e > dc.tol || math.IsNaN(e) {
								t.Errorf("rank %d: %s: relative error %.3g > %.0e", r, name, e, dc.tol)
							}
						}
					}
				})
			}
		}
	}
}

// TestRingBalancingIsBitwise: with ranks handing query blocks to the next one
// (every rank some, in forward and backward), the loss and every gradient are
// bitwise those of the same workers unbalanced, over gRPC, with packed
// documents, gradient accumulation 2, and under shifted sparse attention.
func TestRingBalancingIsBitwise(t *testing.T) {
	give := func(rank int) *parallel.Balancer {
		return &parallel.Balancer{Fixed: func(call int, backward bool) int { return 1 + (rank+call)%2 }}
	}
	for _, dtype := range []dtypes.DType{dtypes.Float64, dtypes.Float32} {
		for _, shift := range []int{0, 6} {
			cfg := parityConfig(t, dtype, 64, 2)
			cfg.ShiftGroups = shift
			for _, n := range []int{2, 4} {
				t.Run(fmt.Sprintf("%s/shift-%d/%d-workers", dtype, shift, n), func(t *testing.T) {
					want := runWorkers(t, cfg, grpcTransports(t, n), "ring")
					got := runBalanced(t, cfg, grpcTransports(t, n), "ring", 1, give)
					for r := range n {
						if got[r].loss != want[r].loss {
							t.Errorf("rank %d: loss %.17g balanced, %.17g not", r, got[r].loss, want[r].loss)
						}
						for name, w := range want[r].grads {
							for i := range w {
								if got[r].grads[name][i] != w[i] {
									t.Errorf("rank %d: %s[%d] = %.17g balanced, %.17g not", r, name, i, got[r].grads[name][i], w[i])
									break
								}
							}
						}
					}
				})
			}
		}
	}
}

// TestUlyssesReplicatesKVHeads: with fewer key/value heads than Ulysses ranks
// (GQA: 8 query heads on 2 or 1 key/value heads, over 4 ranks, and 2 over 2),
// each rank gets the key/value head its query heads share, replicated, and the
// dK, dV shares are summed back: the loss and every gradient equal one
// worker's within 1e-9 (float64) and 1e-5 (float32), with packed documents and
// gradient accumulation 2. A layout that cannot work names the factor.
func TestUlyssesReplicatesKVHeads(t *testing.T) {
	for _, dc := range []struct {
		dtype dtypes.DType
		tol   float64
	}{{dtypes.Float64, 1e-9}, {dtypes.Float32, 1e-5}} {
		for _, tc := range []struct{ kv, sp int }{{2, 4}, {1, 4}, {1, 2}} {
			t.Run(fmt.Sprintf("%s/kv%d-sp%d", dc.dtype, tc.kv, tc.sp), func(t *testing.T) {
				cfg := parityConfig(t, dc.dtype, 64, 2)
				cfg.Model.KVHeads = tc.kv
				want := runWorkers(t, cfg, nil, "")[0]
				ts := parallel.NewLocal(tc.sp)
				if tc.sp == 4 && tc.kv == 2 {
					ts = grpcTransports(t, tc.sp)
				}
				for r, g := range runWorkers(t, cfg, ts, "ulysses") {
					if e := math.Abs(g.loss-want.loss) / math.Abs(want.loss); e > dc.tol {
						t.Errorf("rank %d: loss %.12g, one worker %.12g (relative error %.3g)", r, g.loss, want.loss, e)
					}
					for name, w := range want.grads {
						if e := relErr(g.grads[name], w); e > dc.tol || math.IsNaN(e) {
							t.Errorf("rank %d: %s: relative error %.3g > %.0e", r, name, e, dc.tol)
						}
					}
				}
			})
		}
	}
	cfg := parityConfig(t, dtypes.Float32, 64, 1)
	for _, tc := range []struct {
		kv, sp int
		want   string
	}{{4, 16, "heads (8) divisible by sp (16)"}, {3, 2, "kv_heads (3) divisible by sp (2), or sp a multiple of kv_heads"}} {
		c := cfg
		c.Model.KVHeads = tc.kv
		if tc.kv == 3 {
			c.Model.Heads, c.Model.Dim = 6, 48
		}
		ts := parallel.NewLocal(tc.sp)
		_, err := trainer.New(c, &trainer.Dist{T: ts[0], Mesh: parallel.Mesh{World: tc.sp, DP: 1, SP: tc.sp}, Strategy: "ulysses"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("kv_heads %d, sp %d: %v, want an error naming %q", tc.kv, tc.sp, err, tc.want)
		}
	}
}

// TestDataParallelParity: 4 workers as 2 data-parallel groups of a 2-rank ring,
// each group taking every other micro-batch, equal one worker accumulating all 4.
func TestDataParallelParity(t *testing.T) {
	one := parityConfig(t, dtypes.Float64, 64, 4)
	want := runWorkers(t, one, nil, "")[0]
	cfg := one
	cfg.GradAccum = 2 // per group: 2 groups x 2 = the same 4 sequences
	for r, g := range runMesh(t, cfg, parallel.NewLocal(4), "ring", 2) {
		if e := math.Abs(g.loss-want.loss) / math.Abs(want.loss); e > 1e-9 {
			t.Errorf("rank %d: loss %.12g, one worker %.12g", r, g.loss, want.loss)
		}
		for name, w := range want.grads {
			if e := relErr(g.grads[name], w); e > 1e-9 || math.IsNaN(e) {
				t.Errorf("rank %d: %s: relative error %.3g", r, name, e)
			}
		}
	}
}
