package parallel

import (
	"context"
	"fmt"

	"github.com/gomlx/gomlx/core/tensors"

	"github.com/torusml/torus/model"
)

// Hybrid sequence parallelism (USP, LoongTrain's 2-D attention): the sp ranks
// sharing a sequence are ulysses x ring. Global sequence-parallel index
// s = a*ulysses + b: the ranks of one Ulysses group (the same a) are
// neighbours, and an all-to-all inside the group trades their tokens for
// heads, so rank (a, b) holds the group's tokens for head group b; across the
// groups, the ranks holding head group b (the same b) form a ring that passes
// the groups' key/value blocks round as RingAttention does. Zigzag sharding
// stays per rank (2*sp chunks), so every group's tokens carry the same causal
// work. The ring and the all-to-all each see only their group, through a
// groupTransport, and are the plain schedules.

// NewHybrid is Ulysses inside groups of ulysses ranks, over a ring of
// Mesh.SP/ulysses groups. ulysses must divide Mesh.SP; ulysses == SP is plain
// Ulysses, 1 is the plain ring (use those).
func NewHybrid(full *model.BlockAttention, t Transport, m Mesh, ulysses int, wait *WaitClock) (*Ulysses, error) {
	if ulysses < 1 || m.SP%ulysses != 0 {
		return nil, layoutError("parallel.ulysses", fmt.Sprintf("must divide sp (%d), got %d", m.SP, ulysses), "")
	}
	ring := m.SP / ulysses
	dp, s := m.Coords(t.Rank())
	a, b := s/ulysses, s%ulysses
	var uly, rng []int
	for i := range ulysses {
		uly = append(uly, m.Rank(dp, a*ulysses+i))
	}
	for i := range ring {
		rng = append(rng, m.Rank(dp, i*ulysses+b))
	}
	ut := &groupTransport{t: t, members: uly, me: b, prefix: "u:"}
	u, err := NewUlysses(full, ut, Mesh{World: ulysses, DP: 1, SP: ulysses})
	if err != nil {
		return nil, err
	}
	u.Wait = wait
	if ring > 1 {
		rt := &groupTransport{t: t, members: rng, me: a, prefix: fmt.Sprintf("r%d:", b)}
		u.inner = &RingAttention{Attn: u.local, T: rt, Mesh: Mesh{World: ring, DP: 1, SP: ring}, Wait: wait}
	}
	return u, nil
}

// groupTransport is a Transport over some of a job's ranks: its rank i is
// members[i], and its tags carry a prefix, so that two groups' schedules never
// take each other's messages.
type groupTransport struct {
	t       Transport
	members []int
	me      int
	prefix  string
}

func (g *groupTransport) Rank() int { return g.me }
func (g *groupTransport) Size() int { return len(g.members) }
func (g *groupTransport) Send(ctx context.Context, to int, tag string, ts ...*tensors.Tensor) error {
	return g.t.Send(ctx, g.members[to], g.prefix+tag, ts...)
}
func (g *groupTransport) Recv(ctx context.Context, from int, tag string, want ...Spec) ([]*tensors.Tensor, error) {
	return g.t.Recv(ctx, g.members[from], g.prefix+tag, want...)
}
func (g *groupTransport) Stats() Stats { return g.t.Stats() }
func (g *groupTransport) Close() error { return nil } // the job's transport is its owner's to close
