package parallel_test

import (
	"errors"
	"testing"

	"github.com/torusml/torus/parallel"
)

// TestTopology: the one check of a job's layout, as the recipe and every
// command meet it: sp's default, the factors, zigzag and Ulysses' heads, each
// error under the recipe key to change.
func TestTopology(t *testing.T) {
	for _, tc := range []struct {
		name    string
		layout  parallel.Topology
		want    parallel.Mesh
		wantKey string // "" : no error
	}{
		{"sp from workers/dp", parallel.Topology{Workers: 8, DP: 2, SeqLen: 64}, parallel.Mesh{World: 8, DP: 2, SP: 4}, ""},
		{"alone", parallel.Topology{Workers: 1, DP: 1, SeqLen: 7}, parallel.Mesh{World: 1, DP: 1, SP: 1}, ""},
		{"sp given", parallel.Topology{Workers: 4, DP: 1, SP: 4, Strategy: "ring"}, parallel.Mesh{World: 4, DP: 1, SP: 4}, ""},
		{"no workers", parallel.Topology{Workers: 0, DP: 1}, parallel.Mesh{}, "parallel.workers"},
		{"dp does not divide", parallel.Topology{Workers: 4, DP: 3}, parallel.Mesh{}, "parallel.dp"},
		{"dp x sp", parallel.Topology{Workers: 4, DP: 1, SP: 3}, parallel.Mesh{}, "parallel.sp"},
		{"zigzag", parallel.Topology{Workers: 4, DP: 1, SeqLen: 100}, parallel.Mesh{}, "data.seq_len"},
		{"ulysses kv heads", parallel.Topology{Workers: 8, DP: 1, Strategy: "ulysses", KVHeads: 3}, parallel.Mesh{}, "parallel.strategy"},
		{"ulysses heads", parallel.Topology{Workers: 8, DP: 1, Strategy: "ulysses", Heads: 4, KVHeads: 4}, parallel.Mesh{}, "parallel.strategy"},
		{"ulysses kv heads replicated", parallel.Topology{Workers: 8, DP: 1, Strategy: "ulysses", Heads: 16, KVHeads: 2}, parallel.Mesh{World: 8, DP: 1, SP: 8}, ""},
		{"ulysses heads unknown", parallel.Topology{Workers: 8, DP: 1, Strategy: "ulysses"}, parallel.Mesh{World: 8, DP: 1, SP: 8}, ""},
		{"strategy", parallel.Topology{Workers: 2, DP: 1, Strategy: "tree"}, parallel.Mesh{}, "parallel.strategy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.layout.Mesh()
			var bad *parallel.LayoutError
			switch {
			case tc.wantKey == "" && err != nil:
				t.Fatalf("Mesh() = %v", err)
			case tc.wantKey == "" && m != tc.want:
				t.Fatalf("Mesh() = %+v, want %+v", m, tc.want)
			case tc.wantKey != "" && !errors.As(err, &bad):
				t.Fatalf("Mesh() = %+v, %v; want a LayoutError under %s", m, err, tc.wantKey)
			case tc.wantKey != "" && bad.Key != tc.wantKey:
				t.Fatalf("error %q under %s, want %s", err, bad.Key, tc.wantKey)
			}
		})
	}
}
