package parallel

import (
	"fmt"
)

// Mesh is the layout of a job's workers: World = DP x SP. Rank r sits at data-parallel
// index r / SP and sequence-parallel index r % SP; the SP ranks of one DP index
// share every sequence (each holds a zigzag slice of it) and form a ring.
// A Mesh is a value, built once from the recipe and the world size, and passed
// explicitly: every neighbour and shard range is a method of it.
type Mesh struct {
	World, DP, SP int
}

// NewMesh checks that the factors multiply to the world, naming each.
func NewMesh(world, dp, sp int) (Mesh, error) {
	m := Mesh{World: world, DP: dp, SP: sp}
	return m, m.Validate()
}

// Validate reports a layout that cannot work, with every factor in the message.
func (m Mesh) Validate() error {
	switch {
	case m.World < 1:
		return fmt.Errorf("parallel: workers must be >= 1, got %d", m.World)
	case m.DP < 1 || m.SP < 1:
		return fmt.Errorf("parallel: dp (%d) and sp (%d) must be >= 1", m.DP, m.SP)
	case m.DP*m.SP != m.World:
		return fmt.Errorf("parallel: dp (%d) * sp (%d) = %d, but workers = %d", m.DP, m.SP, m.DP*m.SP, m.World)
	}
	return nil
}

// Coords is rank's (data-parallel index, sequence-parallel index).
func (m Mesh) Coords(rank int) (dp, sp int) { return rank / m.SP, rank % m.SP }

// Rank is the rank at (dp, sp).
func (m Mesh) Rank(dp, sp int) int { return dp*m.SP + sp }

// SPGroup is the ranks sharing rank's sequences, in ring order.
func (m Mesh) SPGroup(rank int) []int {
	dp, _ := m.Coords(rank)
	g := make([]int, m.SP)
	for i := range g {
		g[i] = m.Rank(dp, i)
	}
	return g
}

// RingNext is the rank that rank sends key/value blocks to.
func (m Mesh) RingNext(rank int) int {
	dp, sp := m.Coords(rank)
	return m.Rank(dp, (sp+1)%m.SP)
}

// RingPrev is the rank that rank receives key/value blocks from.
func (m Mesh) RingPrev(rank int) int {
	dp, sp := m.Coords(rank)
	return m.Rank(dp, (sp+m.SP-1)%m.SP)
}

// Zigzag returns the token indices of a length-L sequence that sequence-parallel
// index sp holds: the sequence is cut into 2*SP equal chunks and sp holds chunks
// sp and 2*SP-1-sp, so every worker gets the same share of causal work.
func (m Mesh) Zigzag(sp, L int) ([]int, error) {
	if L%(2*m.SP) != 0 {
		return nil, fmt.Errorf("parallel: seq_len %d must be a multiple of 2*sp = %d for zigzag sharding", L, 2*m.SP)
	}
	c := L / (2 * m.SP)
	idx := make([]int, 0, 2*c)
	for _, chunk := range []int{sp, 2*m.SP - 1 - sp} {
		for i := range c {
			idx = append(idx, chunk*c+i)
		}
	}
	return idx, nil
}
