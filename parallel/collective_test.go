package parallel_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/parallel"
)

func eachRank(t *testing.T, ts []parallel.Transport, fn func(r int, tr parallel.Transport) error) {
	t.Helper()
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for r, tr := range ts {
		wg.Add(1)
		go func() { defer wg.Done(); errs[r] = fn(r, tr) }()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func TestAllReduceSum(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4} {
		for _, size := range []int{1, 5, 1000} {
			t.Run(fmt.Sprintf("%d ranks, %d elements", n, size), func(t *testing.T) {
				ts := parallel.NewLocal(n)
				group := make([]int, n)
				for i := range group {
					group[i] = i
				}
				vals := make([][]float32, n)
				want := make([]float64, size+3)
				out := make([][]float32, n)
				for r := range n {
					for i := range size + 3 {
						v := float32(math.Sin(float64(r*7919+i)) * 10)
						vals[r] = append(vals[r], v)
						want[i] += float64(v)
					}
				}
				eachRank(t, ts, func(r int, tr parallel.Transport) error {
					a := tensors.FromFlatDataAndDimensions(append([]float32(nil), vals[r][:size]...), size)
					b := tensors.FromFlatDataAndDimensions(append([]float32(nil), vals[r][size:]...), 3)
					if err := parallel.AllReduceSum(context.Background(), tr, group, "g", []*tensors.Tensor{a, b}); err != nil {
						return err
					}
					out[r] = append(tensors.MustCopyFlatData[float32](a), tensors.MustCopyFlatData[float32](b)...)
					if sent, want := tr.Stats().BytesSent, int64(parallel.SentElems(size+3, n, r)*4); sent != want {
						return fmt.Errorf("sent %d bytes, SentElems says %d", sent, want)
					}
					return nil
				})
				for r := range n {
					for i, v := range out[r] {
						if v != out[0][i] {
							t.Fatalf("rank %d element %d = %v, rank 0 has %v: sums must be bit-identical", r, i, v, out[0][i])
						}
						if math.Abs(float64(v)-want[i]) > 1e-4*max(1, math.Abs(want[i])) {
							t.Fatalf("element %d = %v, want %v", i, v, want[i])
						}
					}
				}
			})
		}
	}
}

func TestAllGatherAndAllToAll(t *testing.T) {
	const n = 3
	ts := parallel.NewLocal(n)
	group := []int{0, 1, 2}
	eachRank(t, ts, func(r int, tr parallel.Transport) error {
		got, err := parallel.AllGather(context.Background(), tr, group, "ag", []*tensors.Tensor{tensors.FromFlatDataAndDimensions([]int32{int32(r)}, 1)})
		if err != nil {
			return err
		}
		for j, g := range got {
			if v := tensors.MustCopyFlatData[int32](g[0])[0]; v != int32(j) {
				return fmt.Errorf("gathered %d from rank %d", v, j)
			}
		}
		parts := make([][]*tensors.Tensor, n)
		for j := range parts {
			parts[j] = []*tensors.Tensor{tensors.FromFlatDataAndDimensions([]int32{int32(10*r + j)}, 1)}
		}
		got, err = parallel.AllToAll(context.Background(), tr, group, "a2a", parts)
		if err != nil {
			return err
		}
		for j, g := range got {
			if v := tensors.MustCopyFlatData[int32](g[0])[0]; v != int32(10*j+r) {
				return fmt.Errorf("all-to-all from rank %d: %d, want %d", j, v, 10*j+r)
			}
		}
		return nil
	})
}

func TestMesh(t *testing.T) {
	for _, bad := range []struct {
		world, dp, sp int
		want          string
	}{{4, 1, 3, "dp (1) * sp (3) = 3, but workers = 4"}, {0, 1, 1, "workers must be >= 1"}, {2, 0, 2, "dp (0) and sp (2)"}} {
		if _, err := parallel.NewMesh(bad.world, bad.dp, bad.sp); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("NewMesh(%d, %d, %d) = %v, want %q", bad.world, bad.dp, bad.sp, err, bad.want)
		}
	}
	m, err := parallel.NewMesh(4, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	if g := m.SPGroup(3); fmt.Sprint(g) != "[2 3]" {
		t.Errorf("SPGroup(3) = %v", g)
	}
	if m.RingNext(3) != 2 || m.RingPrev(2) != 3 || m.RingNext(0) != 1 {
		t.Errorf("ring neighbours wrong")
	}
	m, _ = parallel.NewMesh(2, 1, 2)
	seen := map[int]bool{}
	for sp := range 2 {
		idx, err := m.Zigzag(sp, 8)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]string{0: "[0 1 6 7]", 1: "[2 3 4 5]"}[sp]
		if fmt.Sprint(idx) != want {
			t.Errorf("Zigzag(%d, 8) = %v, want %s", sp, idx, want)
		}
		for _, i := range idx {
			seen[i] = true
		}
	}
	if len(seen) != 8 {
		t.Errorf("zigzag shards cover %d of 8 tokens", len(seen))
	}
	if _, err := m.Zigzag(0, 6); err == nil || !strings.Contains(err.Error(), "multiple of 2*sp = 4") {
		t.Errorf("Zigzag of 6 tokens over sp 2: %v", err)
	}
}
