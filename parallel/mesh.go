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

// Topology is a job's layout as a recipe asks for it, with the shapes that
// constrain it. Its Mesh method is the one place a layout is checked and built:
// the recipe's validation, train, worker, launch, plan and the trainer all go
// through it.
type Topology struct {
	Workers, DP, SP        int    // SP 0: Workers/DP
	Strategy               string // "ring" (or ""), "ulysses"
	SeqLen, Heads, KVHeads int    // 0: not known where the layout is built, so not checked
	// Ulysses and Ring, when set, are the degrees of hybrid sequence
	// parallelism (sp = Ulysses x Ring; NewHybrid); one set, the other is sp
	// over it. Unset (0), Strategy alone decides: all Ulysses or all ring.
	Ulysses, Ring int
}

// UlyssesDegree is how many neighbouring ranks of an sp group trade tokens
// for heads (the rest of sp is the ring across those groups): Topology.Ulysses,
// sp/Ring, or sp under strategy ulysses and 1 under ring. sp is the Mesh's.
func (t Topology) UlyssesDegree(sp int) int {
	switch {
	case t.Ulysses > 0:
		return t.Ulysses
	case t.Ring > 0 && sp%t.Ring == 0:
		return sp / t.Ring
	case t.Strategy == "ulysses":
		return sp
	}
	return 1
}

// LayoutError is a topology that cannot work. Key is the recipe key to change
// and Msg says why in the recipe's words; Error says it to a caller of the API.
type LayoutError struct {
	Key, Msg string
	err      string
}

func (e *LayoutError) Error() string { return "parallel: " + e.err }

func layoutError(key, msg, err string) *LayoutError {
	if err == "" {
		err = key + ": " + msg
	}
	return &LayoutError{Key: key, Msg: msg, err: err}
}

// Mesh builds the layout's Mesh, or returns a *LayoutError naming every factor.
func (t Topology) Mesh() (Mesh, error) {
	switch {
	case t.Workers < 1:
		return Mesh{}, layoutError("parallel.workers", fmt.Sprintf("must be >= 1, got %d", t.Workers), fmt.Sprintf("workers must be >= 1, got %d", t.Workers))
	case t.DP < 1 || t.SP < 0:
		return Mesh{}, layoutError("parallel.dp", fmt.Sprintf("dp (%d) must be >= 1 and sp (%d) >= 0", t.DP, t.SP), fmt.Sprintf("dp (%d) and sp (%d) must be >= 1", t.DP, t.SP))
	}
	sp := t.SP
	if sp == 0 {
		if t.Workers%t.DP != 0 {
			return Mesh{}, layoutError("parallel.dp", fmt.Sprintf("dp (%d) must divide workers (%d) when sp is left to workers/dp", t.DP, t.Workers), "")
		}
		sp = t.Workers / t.DP
	}
	if t.DP*sp != t.Workers {
		return Mesh{}, layoutError("parallel.sp", fmt.Sprintf("dp (%d) * sp (%d) must equal workers (%d)", t.DP, sp, t.Workers),
			fmt.Sprintf("dp (%d) * sp (%d) = %d, but workers = %d", t.DP, sp, t.DP*sp, t.Workers))
	}
	m := Mesh{World: t.Workers, DP: t.DP, SP: sp}
	if t.SeqLen > 0 && sp > 1 {
		if _, err := m.Zigzag(0, t.SeqLen); err != nil {
			return Mesh{}, err
		}
	}
	switch t.Strategy {
	case "", "ring", "ulysses":
	default:
		return Mesh{}, layoutError("parallel.strategy", fmt.Sprintf(`must be one of "ring", "ulysses", got %q`, t.Strategy), "")
	}
	switch {
	case t.Ulysses < 0 || t.Ring < 0:
		return Mesh{}, layoutError("parallel.ulysses", fmt.Sprintf("ulysses (%d) and ring (%d) must be >= 0 (0: from parallel.strategy)", t.Ulysses, t.Ring), "")
	case t.Ulysses > 0 && t.Ring > 0 && t.Ulysses*t.Ring != sp:
		return Mesh{}, layoutError("parallel.ulysses", fmt.Sprintf("ulysses (%d) x ring (%d) = %d, but sp = %d", t.Ulysses, t.Ring, t.Ulysses*t.Ring, sp), "")
	case t.Ulysses > 0 && sp%t.Ulysses != 0:
		return Mesh{}, layoutError("parallel.ulysses", fmt.Sprintf("must divide sp (%d), got %d", sp, t.Ulysses), "")
	case t.Ring > 0 && sp%t.Ring != 0:
		return Mesh{}, layoutError("parallel.ring", fmt.Sprintf("must divide sp (%d), got %d", sp, t.Ring), "")
	}
	// Each rank of a Ulysses group of u takes heads/u query heads and their
	// key/value heads: kv_heads/u of them, or, with fewer key/value heads
	// than ranks, the one its query heads share, replicated on u/kv_heads ranks.
	key, what, u := "parallel.strategy", "sp", t.UlyssesDegree(sp)
	if t.Ulysses > 0 {
		key, what = "parallel.ulysses", "the ulysses degree"
	} else if t.Ring > 0 {
		key, what = "parallel.ring", "the ulysses degree"
	}
	switch {
	case u <= 1 || t.KVHeads == 0 || t.KVHeads%u == 0 && (t.Heads == 0 || t.Heads%u == 0):
	case u%t.KVHeads == 0 && (t.Heads == 0 || t.Heads%u == 0):
	case t.Heads > 0 && t.Heads%u != 0:
		return Mesh{}, layoutError(key, fmt.Sprintf("ulysses needs heads (%d) divisible by %s (%d); use ring, or another sp", t.Heads, what, u), "")
	default:
		return Mesh{}, layoutError(key, fmt.Sprintf("ulysses needs kv_heads (%d) divisible by %s (%d), or %s a multiple of kv_heads (each key/value head then replicated on %d/kv_heads ranks); use ring, or another sp", t.KVHeads, what, u, what, u), "")
	}
	return m, nil
}

// NewMesh is the Mesh of world workers as dp x sp, checked (Topology.Mesh).
// Unlike a Topology's, sp 0 is not a default here.
func NewMesh(world, dp, sp int) (Mesh, error) {
	if sp < 1 {
		return Mesh{}, layoutError("parallel.sp", fmt.Sprintf("must be >= 1, got %d", sp), fmt.Sprintf("dp (%d) and sp (%d) must be >= 1", dp, sp))
	}
	return Topology{Workers: world, DP: dp, SP: sp}.Mesh()
}

// Validate reports a layout that cannot work, with every factor in the message.
func (m Mesh) Validate() error {
	_, err := NewMesh(m.World, m.DP, m.SP)
	return err
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
		return nil, layoutError("data.seq_len", fmt.Sprintf("must be a multiple of 2*sp = %d for zigzag sharding, got %d", 2*m.SP, L),
			fmt.Sprintf("seq_len %d must be a multiple of 2*sp = %d for zigzag sharding", L, 2*m.SP))
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
