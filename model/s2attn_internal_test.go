package model

import (
	"testing"

	"github.com/gomlx/compute/gobackend"
)

// pairCounts classifies every (query block, key block) pair of one sequence of
// L tokens (a single document) by what the schedule runs for it.
func pairCounts(t *testing.T, b *BlockAttention, L int) (skipped, unmasked, masked int) {
	t.Helper()
	tok := Tokens{Pos: make([]int32, L), Doc: make([]int32, L)}
	for i := range tok.Pos {
		tok.Pos[i] = int32(i)
	}
	for _, qb := range b.cut(tok, b.BlockQ) {
		for _, kb := range b.cut(tok, b.BlockK) {
			switch mask, skip := b.pairMask(qb, kb); {
			case skip:
				skipped++
			case mask == nil:
				unmasked++
			case (mask.QGroup != nil) != (b.ShiftGroups > 0):
				t.Fatalf("pair (%d, %d): groups %v with shift groups %d", qb.start, kb.start, mask.QGroup != nil, b.ShiftGroups)
			default:
				masked++
			}
		}
	}
	return skipped, unmasked, masked
}

// TestS2SkipsBlockPairs counts the block pairs shifted sparse attention skips
// at seq 4096, groups of 1024, blocks of 256 (16 x 16 = 256 pairs). Causal
// attention computes the 136 pairs on or below the diagonal. Under S2 a pair
// is computed only when its blocks share a group in some half: 40 pairs share
// an unshifted group (4 groups of 4 blocks: 10 each), 36 a shifted one (groups
// of 2, 4, 4, 4, 2 blocks: 3+10+10+10+3), 24 both, so 52 are computed and 84 of
// the causal 136 skipped. Of the 52, the 8 below the diagonal that share both
// groups need no mask. A Ulysses rank computing one half of the heads only
// computes the pairs sharing that half's group, and of those only the 16 on the
// diagonal need a mask.
func TestS2SkipsBlockPairs(t *testing.T) {
	backend, err := gobackend.New("")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPieces(backend, Config{Vocab: 16, Dim: 64, Layers: 1, Heads: 8, KVHeads: 4, MLPDim: 16, RopeTheta: 10000, NormEps: 1e-5})
	if err != nil {
		t.Fatal(err)
	}
	const L = 4096
	for _, tc := range []struct {
		name                      string
		b                         *BlockAttention
		skipped, unmasked, masked int
	}{
		{"causal", &BlockAttention{P: p, BlockQ: 256, BlockK: 256}, 120, 120, 16},
		{"S2, groups of 1024", &BlockAttention{P: p, BlockQ: 256, BlockK: 256, ShiftGroups: 1024}, 204, 8, 44},
		// What Ulysses ranks of 2 compute: one half of the heads each.
		{"S2, unshifted heads only", &BlockAttention{P: p, BlockQ: 256, BlockK: 256, ShiftGroups: 1024, HeadBase: 0, ModelHeads: 16}, 216, 24, 16},
		{"S2, shifted heads only", &BlockAttention{P: p, BlockQ: 256, BlockK: 256, ShiftGroups: 1024, HeadBase: 8, ModelHeads: 16}, 220, 20, 16},
	} {
		skipped, unmasked, masked := pairCounts(t, tc.b, L)
		t.Logf("%s: %d pairs skipped, %d unmasked, %d masked (%d computed)", tc.name, skipped, unmasked, masked, unmasked+masked)
		if skipped != tc.skipped || unmasked != tc.unmasked || masked != tc.masked {
			t.Errorf("%s: %d skipped, %d unmasked, %d masked; want %d, %d, %d", tc.name, skipped, unmasked, masked, tc.skipped, tc.unmasked, tc.masked)
		}
	}
}
